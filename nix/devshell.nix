# The development shell: the Go toolchain go.mod names, Bazel 8, and the
# tools the build, deployment and release steps call.
{ pkgs, go }:
pkgs.mkShell {
  packages = [
    go
    pkgs.bazel_8
    pkgs.bazel-buildtools # buildifier, buildozer
    pkgs.kubectl
    pkgs.k3d
    pkgs.kustomize
    pkgs.kubernetes-helm
    pkgs.cosign
    pkgs.syft
    pkgs.sops
    pkgs.age
    pkgs.nats-server
  ];

  # Never let the go command download another toolchain over the one above.
  GOTOOLCHAIN = "local";
  CGO_ENABLED = "0";
}
