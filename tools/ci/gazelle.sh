#!/usr/bin/env bash
# Regenerates (default) or checks the BUILD.bazel files of the whole tree
# with the gazelle pinned in tools/buildtools/go.mod, the version MODULE.bazel
# uses, resolving imports exactly as `bazel run //:gazelle` does:
#   tools/ci/gazelle.sh          write BUILD.bazel files
#   tools/ci/gazelle.sh -check   fail, printing the diff, if any would change
# Offline: external imports resolve through a repository configuration made
# from go.mod (what go_deps hands gazelle under Bazel); nothing is fetched.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

mode=fix
case "${1:-}" in
  "") ;;
  -check) mode=diff ;;
  *) echo "usage: $0 [-check]" >&2; exit 2 ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOWORK=off go run ./tools/repocheck/cmd/gazellerepos >"$tmp/repos.bzl"

# -external=static: an import that is neither in this module nor in go.mod is
# left out rather than looked up on the network. Under Bazel the gazelle
# binary knows the SDK's standard library; this build's list stops at Go
# 1.23, so newer standard packages (crypto/mlkem, crypto/hpke...) would
# otherwise be looked up as modules. Both runs give the same BUILD files.
# Build gazelle first, with the module proxy (a fresh machine has none of its
# modules yet); then run it with GOPROXY=off so that it never looks anything up.
gazelle="$(GOWORK=off GOFLAGS=-mod=readonly go tool -modfile="$root/tools/buildtools/go.mod" -n gazelle)"
set +e
GOPROXY=off "$gazelle" -mode="$mode" -bzlmod -repo_root="$root" \
  -repo_config="$tmp/repos.bzl" -external=static -go_prefix=github.com/guardyn/guardyn \
  "$root" >"$tmp/out" 2>"$tmp/err"
status=$?
set -e
if [ -s "$tmp/err" ]; then
  cat "$tmp/err" >&2
  echo "gazelle: reported problems above" >&2
  exit 1
fi
if [ "$mode" = diff ] && [ "$status" -ne 0 ]; then
  cat "$tmp/out"
  echo "gazelle: BUILD files are out of date; run tools/ci/gazelle.sh" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  cat "$tmp/out"
  echo "gazelle: failed with status $status" >&2
  exit "$status"
fi
