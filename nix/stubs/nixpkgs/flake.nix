# An offline stand-in for nixpkgs with exactly the attributes Guardyn's flake
# uses, each a trivial derivation or function. CI evaluates the real flake
# against it (`--override-input nixpkgs path:./nix/stubs/nixpkgs`), so a typo,
# an undefined name or a wrong argument fails without fetching nixpkgs.
# Adding a tool to the flake means adding it here too.
{
  description = "Offline nixpkgs stub for evaluating Guardyn's flake in CI";

  outputs = { self }:
    let
      lib = import ./lib.nix;
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit lib system; });
    };
}
