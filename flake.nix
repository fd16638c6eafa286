{
  description = "Guardyn: privacy-first messaging. Dev shell and reproducible service binaries.";

  # flake.lock pins the nixpkgs revision; it is created by the first
  # `nix flake lock` on a machine with network access (see docs/build.md).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The toolchain go.mod and MODULE.bazel name (Go 1.26); a nixpkgs
      # without it must fail here, not build with another Go.
      goFor = pkgs:
        let
          go = pkgs.go_1_26;
          v = builtins.splitVersion go.version;
        in
        if builtins.length v >= 2 && builtins.elemAt v 0 == "1" && builtins.elemAt v 1 == "26"
        then go
        else throw "guardyn: nixpkgs go_1_26 is Go ${go.version}, want 1.26.x";

      # Only what the product module compiles, so edits to docs, infra or
      # the separate tool modules do not change the source hash. go.work is
      # left out: the product builds as its own module.
      src = builtins.path {
        name = "guardyn-source";
        path = ./.;
        filter = path: type:
          let
            root = toString ./.;
            p = toString path;
            rel = builtins.substring (builtins.stringLength root + 1) (builtins.stringLength p) p;
            top = builtins.head (builtins.split "/" rel);
          in
          builtins.elem rel [ "go.mod" "go.sum" ]
          || (builtins.elem top [ "apps" "libs" "services" "proto" "tools" ]
            && rel != "tools/buildtools"
            && builtins.substring 0 17 rel != "tools/buildtools/");
      };
    in
    {
      packages = forAllSystems (pkgs:
        let
          bins = import ./nix/packages.nix {
            inherit pkgs src;
            go = goFor pkgs;
            vendorHash = nixpkgs.lib.fileContents ./nix/vendor-hash;
          };
        in
        bins // { default = bins.guardyn-server; });

      # `nix run .#release -- build --version v0.3.0 --key cosign.key --out dist`
      # (and `-- verify …`): the release tool of release/, its own Go module,
      # built with the pinned Go and run in the caller's directory, so
      # relative paths mean what they say (docs/release.md). It needs the
      # Go module cache or the module proxy, like `go run`.
      apps = forAllSystems (pkgs: {
        release = {
          type = "app";
          program = "${pkgs.writeShellScript "guardyn-release" ''
            set -eu
            root="$(git rev-parse --show-toplevel)"
            bin="$(mktemp -d)"
            trap 'rm -rf "$bin"' EXIT
            GOWORK=off ${goFor pkgs}/bin/go -C "$root/release" build -o "$bin/release" .
            "$bin/release" "$@"
          ''}";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = import ./nix/devshell.nix { inherit pkgs; go = goFor pkgs; };
      });
    };
}
