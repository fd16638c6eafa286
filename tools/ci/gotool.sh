#!/usr/bin/env bash
# Runs a build tool pinned in tools/buildtools/go.mod (gazelle, buildifier,
# staticcheck), so the product module's go.mod never carries them:
#   tools/ci/gotool.sh staticcheck ./...
# It runs in the current directory when that is inside a Go module (so
# staticcheck checks that module), else at the repository root.
# GOWORK=off because `go tool -modfile` is refused in workspace mode, and
# -mod=readonly so the tools build from exactly what their go.sum pins,
# whatever GOFLAGS the caller uses for the product.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tool="${1:?usage: gotool.sh TOOL [ARGS...]}"
shift
gomod="$(GOWORK=off go env GOMOD)"
if [ -z "$gomod" ] || [ "$gomod" = /dev/null ]; then
  cd "$root" # -modfile needs a main module in the working directory
fi
GOWORK=off GOFLAGS=-mod=readonly exec go tool -modfile="$root/tools/buildtools/go.mod" "$tool" "$@"
