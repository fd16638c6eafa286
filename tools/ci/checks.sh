#!/usr/bin/env bash
# The repository checks CI runs after the tests, in order, stopping at the
# first failure with the step's name. Run from anywhere:
#   tools/ci/checks.sh
# Steps: gofmt, go vet, staticcheck, gazelle (BUILD files current),
# buildifier (Starlark formatted and lint-clean), actionlint (GitHub Actions
# workflows), protogen -check (when
# tools/protogen exists), the Nix evaluation, go mod tidy -diff per module.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# A private build cache unless the caller chose one: the user's cache is
# shared with other builds on the machine.
export GOCACHE="${GOCACHE:-/tmp/guardyn-ci-gocache-$(id -u)}"

step=""
trap 'status=$?; if [ $status -ne 0 ]; then echo "checks: FAILED at step: $step" >&2; fi' EXIT
run() {
  step="$1"
  echo "== $step"
}

# Every Go module of the repository: the product and the separate ones
# (tools/buildtools, infra/, release/ once it exists).
modules=(.)
for m in tools/buildtools infra release; do
  [ -f "$m/go.mod" ] && modules+=("$m")
done

# Files as git sees them (tracked or new, never ignored): caches and build
# outputs in the checkout stay out.
files() { git ls-files -co --exclude-standard -- "$@"; }

run "gofmt -l (generated files included)"
unformatted="$(files '*.go' | xargs -r gofmt -l)"
if [ -n "$unformatted" ]; then
  echo "$unformatted"
  echo "gofmt: the files above need gofmt -w" >&2
  exit 1
fi

for m in "${modules[@]}"; do
  [ -n "$(cd "$m" && GOWORK=off go list ./... 2>/dev/null)" ] || continue # tools/buildtools: no packages
  run "go vet ./... in $m"
  (cd "$m" && GOWORK=off go vet ./...)
  run "staticcheck ./... in $m"
  (cd "$m" && "$root/tools/ci/gotool.sh" staticcheck ./...)
done

run "gazelle -mode=diff (BUILD files current)"
tools/ci/gazelle.sh -check

run "buildifier -mode=check -lint=warn"
mapfile -t starlark < <(files 'BUILD.bazel' '*/BUILD.bazel' 'BUILD' '*/BUILD' 'MODULE.bazel' '*.bzl' 'WORKSPACE' '*.bazel' | sort -u)
if [ "${#starlark[@]}" -gt 0 ]; then
  # Absolute paths: gotool.sh may run at the repository root.
  tools/ci/gotool.sh buildifier -mode=check -lint=warn "${starlark[@]/#/$root/}"
fi

mapfile -t workflows < <(files '.github/workflows/*.yml' '.github/workflows/*.yaml')
if [ "${#workflows[@]}" -gt 0 ]; then
  run "actionlint (GitHub Actions workflows)"
  # shellcheck and pyflakes are not installed: actionlint checks the
  # workflow syntax, expressions, action inputs and job graph without them.
  tools/ci/gotool.sh actionlint -shellcheck= -pyflakes= "${workflows[@]/#/$root/}"
fi

if [ -d tools/protogen ]; then
  run "go run ./tools/protogen -check"
  GOWORK=off go run ./tools/protogen -check
fi

run "nix flake evaluation (tools/ci/nix-check.sh)"
tools/ci/nix-check.sh

for m in "${modules[@]}"; do
  run "go mod tidy -diff in $m"
  (cd "$m" && GOWORK=off go mod tidy -diff)
done

step=""
echo "checks: all passed"
