# Stub packages: each is a derivation that only writes its name, plus the
# attributes the flake reads. Builders check their arguments the way nixpkgs
# would reject them (unknown or missing attributes, malformed hashes,
# subPackages that do not exist in the source).
{ lib, system }:
let
  stub = name: attrs: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" "echo ${name} > $out" ];
  } // attrs);

  tool = pname: version: stub "${pname}-${version}-stub" { inherit version; } // { inherit pname version; };

  check = fn: cond: msg: if cond then true else throw "stub nixpkgs: ${fn}: ${msg}";

  unknownAttrs = allowed: args: builtins.filter (n: !(builtins.elem n allowed)) (builtins.attrNames args);

  checkKnown = fn: allowed: args:
    let bad = unknownAttrs allowed args;
    in check fn (bad == [ ]) "unknown attribute(s) ${builtins.toJSON bad}";

  isSriSha256 = h: builtins.isString h && builtins.match "sha256-[A-Za-z0-9+/]{43}=" h != null;

  makeBuildGoModule = go: {
    __functor = _: args:
      let
        fn = "buildGoModule";
        allowed = [
          "pname" "version" "src" "vendorHash" "subPackages" "env" "ldflags" "tags"
          "doCheck" "postInstall" "meta" "modRoot" "proxyVendor" "nativeBuildInputs"
        ];
        subPackages = args.subPackages or [ ];
        missing = builtins.filter (p: !(builtins.pathExists "${args.src}/${p}")) subPackages;
      in
      assert checkKnown fn allowed args;
      assert check fn (args ? pname && args ? version && args ? src) "pname, version and src are required";
      assert check fn (args ? vendorHash) "vendorHash is missing";
      assert check fn (args.vendorHash == null || isSriSha256 args.vendorHash)
        "vendorHash ${builtins.toJSON args.vendorHash} is not an SRI sha256 hash (run tools/ci/vendorhash.sh)";
      assert check fn (missing == [ ]) "subPackages not in the source: ${builtins.toJSON missing}";
      assert check fn (builtins.all (f: builtins.isString f) (args.ldflags or [ ])) "ldflags must be strings";
      stub "${args.pname}-${args.version}" {
        inherit (args) pname version;
        subPackages = builtins.concatStringsSep " " subPackages;
        ldflags = builtins.concatStringsSep " " (args.ldflags or [ ]);
        CGO_ENABLED = (args.env or { }).CGO_ENABLED or "1";
        goVersion = go.version;
        postInstall = args.postInstall or "";
      } // { meta = args.meta or { }; passthru = { inherit go; }; };
    override = o: makeBuildGoModule (o.go or go);
  };

  go_1_26 = tool "go" "1.26.8";
in
{
  inherit go_1_26;
  buildGoModule = makeBuildGoModule go_1_26;

  mkShell = args:
    let allowed = [ "packages" "nativeBuildInputs" "buildInputs" "inputsFrom" "shellHook" "name" "GOTOOLCHAIN" "CGO_ENABLED" ];
    in
    assert checkKnown "mkShell" allowed args;
    assert check "mkShell" (builtins.all (p: builtins.isAttrs p && (p.type or "") == "derivation") (args.packages or [ ]))
      "packages must be derivations";
    stub (args.name or "nix-shell") (removeAttrs args [ "packages" "nativeBuildInputs" "buildInputs" "inputsFrom" ] // {
      packages = map (p: p.name) (args.packages or [ ]);
    });

  # nixpkgs' writeShellScript name text: an executable script in the store.
  writeShellScript = name: text:
    assert check "writeShellScript" (builtins.isString name && builtins.isString text) "name and text must be strings";
    stub name { inherit text; };

  bazel_8 = tool "bazel" "0-stub";
  bazel-buildtools = tool "bazel-buildtools" "0-stub";
  protobuf = tool "protobuf" "0-stub";
  kubectl = tool "kubectl" "0-stub";
  k3d = tool "k3d" "0-stub";
  kustomize = tool "kustomize" "0-stub";
  kubernetes-helm = tool "helm" "0-stub";
  cosign = tool "cosign" "0-stub";
  syft = tool "syft" "0-stub";
  sops = tool "sops" "0-stub";
  age = tool "age" "0-stub";
  nats-server = tool "nats-server" "0-stub";
}
