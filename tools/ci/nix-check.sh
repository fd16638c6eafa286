#!/usr/bin/env bash
# Evaluates every output of flake.nix (all systems, every package and dev
# shell) against the offline nixpkgs stub in nix/stubs/nixpkgs, then checks
# that nix/vendor-hash matches go.mod. Works with no network and no Nix
# daemon: the store is a throwaway local store under $TMPDIR.
# Evaluates the committed tree (a git flake): `git add` new files first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
command -v nix >/dev/null || { echo "nix-check: nix not installed (tools/ci/setup.sh installs nix-bin)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache" # Nix's fetcher cache, not the user's
nixcmd=(nix --extra-experimental-features 'nix-command flakes'
  --store "$tmp/store"
  --option flake-registry "$root/nix/stubs/registry.json"
  --option substituters ''
  --option sandbox false)

opts=(--no-write-lock-file --override-input nixpkgs "path:$root/nix/stubs/nixpkgs")
# A git flake sees only committed files (plus edits to tracked ones), so
# caches in the checkout stay out; shallow=1 accepts CI's shallow clones.
ref="git+file://$root?shallow=1"

# Instantiate every package and dev shell of every system. This also adds
# the filtered source to the store, which `flake check` below (read-only in
# Nix 2.8) then finds.
echo "nix-check: instantiating every package and dev shell against nix/stubs/nixpkgs"
drvPaths='perSystem: builtins.mapAttrs (system: outs: builtins.mapAttrs (name: d: d.drvPath) outs) perSystem'
for output in packages devShells; do
  "${nixcmd[@]}" eval --json "${opts[@]}" "$ref#$output" --apply "$drvPaths" >"$tmp/$output.json"
  echo "nix-check: $output: $(grep -o '\.drv"' "$tmp/$output.json" | wc -l) derivations"
done

# The outputs the flake promises, by name: a package dropped or renamed
# fails here even though the rest still evaluates.
want='["auth","default","guardyn","guardyn-server","messaging"]'
got="$("${nixcmd[@]}" eval --json "${opts[@]}" "$ref#packages.x86_64-linux" --apply builtins.attrNames)"
if [ "$got" != "$want" ]; then
  echo "nix-check: packages.x86_64-linux is $got, want $want" >&2
  exit 1
fi

echo "nix-check: nix flake check --no-build"
"${nixcmd[@]}" flake check --no-build "${opts[@]}" "$ref"

tools/ci/vendorhash.sh -check
