# The Guardyn binaries, one derivation each, built from the same vendored
# module graph (vendorHash: the NAR hash of `go mod vendor`, kept current by
# tools/ci/vendorhash.sh).
{ pkgs, go, src, vendorHash }:
let
  buildGoModule = pkgs.buildGoModule.override { inherit go; };

  # Same bytes on every machine: no cgo, and buildGoModule already adds
  # -trimpath and -buildid= (passing them again only earns a warning), so
  # the flags in effect are `-trimpath -ldflags="-s -w -buildid="`.
  mkBinary = { pname, subPackage, binary ? null }:
    buildGoModule {
      inherit pname src vendorHash;
      version = "0.0.0";
      subPackages = [ subPackage ];
      env.CGO_ENABLED = "0";
      ldflags = [ "-s" "-w" ];
      # Tests run in CI with `go test ./...`; some need loopback networking
      # the Nix sandbox does not give.
      doCheck = false;
      postInstall =
        if binary == null then ""
        else ''
          mv "$out/bin/${baseNameOf subPackage}" "$out/bin/${binary}"
        '';
      meta.mainProgram = if binary == null then baseNameOf subPackage else binary;
    };

  service = name: mkBinary { pname = name; subPackage = "services/${name}/cmd/${name}"; };
in
{
  # The services that exist so far; media, presence and notification have their
  # APIs in proto/ but no implementation yet.
  auth = service "auth";
  messaging = service "messaging";

  # Every service in one process with embedded storage and NATS.
  guardyn-server = mkBinary { pname = "guardyn-server"; subPackage = "tools/devserver"; binary = "guardyn-server"; };
  # The command-line client.
  guardyn = mkBinary { pname = "guardyn"; subPackage = "apps/guardyn"; binary = "guardyn"; };
}
