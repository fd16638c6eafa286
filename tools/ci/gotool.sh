#!/usr/bin/env bash
# Runs a build tool pinned in tools/buildtools/go.mod (gazelle, buildifier,
# staticcheck) from any directory of the repository:
#   tools/ci/gotool.sh buildifier -mode=check BUILD.bazel
# GOWORK=off because `go tool -modfile` is refused in workspace mode, and so
# that the product module's versions never leak into the tools (or back).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tool="${1:?usage: gotool.sh TOOL [ARGS...]}"
shift
# -modfile needs a main module in the working directory; the repository root
# always has one.
cd "$root"
# -mod=readonly: the tools build from exactly what go.sum pins, whatever
# GOFLAGS the caller uses for the product.
GOWORK=off GOFLAGS=-mod=readonly exec go tool -modfile=tools/buildtools/go.mod "$tool" "$@"
