#!/usr/bin/env bash
# The vendorHash of the flake's Go packages: the NAR sha256 of what `go mod
# vendor` writes for the product module, which is exactly what buildGoModule's
# goModules derivation stores and checks.
#   tools/ci/vendorhash.sh          print it
#   tools/ci/vendorhash.sh -write   write it to nix/vendor-hash
#   tools/ci/vendorhash.sh -check   fail if nix/vendor-hash is stale
# The source is the working tree as git sees it (tracked and new files, never
# ignored ones: in CI, exactly what the git flake sees), restricted like
# flake.nix's source filter. Needs the module proxy or a warm module cache.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
mode="${1:-print}"
case "$mode" in print|-write|-check) ;; *) echo "usage: $0 [-write|-check]" >&2; exit 2 ;; esac

tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
git ls-files --cached --others --exclude-standard -z -- go.mod go.sum apps cmd libs services proto tools ':!:tools/buildtools' |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar -cf - --null -T - | tar -xf - -C "$tmp"

# As buildGoModule runs it: its own module (no go.work), no GOFLAGS, the
# toolchain at hand.
(cd "$tmp" && GOWORK=off GOFLAGS= GOTOOLCHAIN=local go mod vendor)
if [ ! -d "$tmp/vendor" ] || [ -z "$(ls -A "$tmp/vendor")" ]; then
  echo "vendorhash: go mod vendor wrote nothing; buildGoModule would need vendorHash = null" >&2
  exit 1
fi
hash="$(nix --extra-experimental-features nix-command hash path --type sha256 --sri "$tmp/vendor")"

case "$mode" in
  print) echo "$hash" ;;
  -write) echo "$hash" >nix/vendor-hash; echo "nix/vendor-hash: $hash" ;;
  -check)
    have="$(cat nix/vendor-hash)"
    if [ "$have" != "$hash" ]; then
      echo "vendorhash: nix/vendor-hash is $have, go mod vendor gives $hash" >&2
      echo "vendorhash: run tools/ci/vendorhash.sh -write and commit nix/vendor-hash" >&2
      exit 1
    fi
    echo "vendorhash: nix/vendor-hash is current ($hash)" ;;
esac
