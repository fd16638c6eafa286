#!/usr/bin/env bash
# Regenerates every derived build file after go.mod or the Go tree changed,
# so that tools/ci/checks.sh passes again:
#   - MODULE.bazel's use_repo(go_deps, ...) from go.mod's direct requirements
#   - BUILD.bazel files across the tree (gazelle)
#   - nix/vendor-hash (the flake's vendorHash)
# Then review and commit MODULE.bazel, the BUILD.bazel files and
# nix/vendor-hash.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
echo "== use_repo from go.mod"
GOWORK=off go test ./tools/repocheck -run 'TestUseRepoMatchesGoMod' -update
echo "== gazelle"
tools/ci/gazelle.sh
echo "== nix/vendor-hash"
tools/ci/vendorhash.sh -write
