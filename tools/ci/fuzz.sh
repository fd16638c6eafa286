#!/usr/bin/env bash
# Runs every Go fuzz target of the repository, one after the other, for a
# fixed time each, and fails if any of them finds a failing input:
#   tools/ci/fuzz.sh             10s per target (CI), or $GUARDYN_FUZZTIME
#   tools/ci/fuzz.sh 5m          the documented campaign (docs/build.md)
#   tools/ci/fuzz.sh -list       print the targets and stop
# Targets are discovered with `go test -list '^Fuzz'` over every package of
# every module, so a new FuzzX is run without being registered anywhere.
# Each line of the summary names a target, its run time and its result; a
# failing input is written by Go under the package's testdata/fuzz/ (keep it
# as a regression seed once the bug is fixed).
#
# Two properties of Go 1.26's fuzzing engine shape how a target is run:
#  - A worker minimizes every input that finds new coverage before it reports
#    back, for up to -fuzzminimizetime (Go's default is 60s). With inputs that
#    cost a KEM decapsulation each, that stalls a 10s run past its deadline, so
#    minimizing is capped at $GUARDYN_FUZZMINIMIZETIME (1s unless set).
#  - The coordinator can report its own -fuzztime deadline as a failure
#    ("context deadline exceeded") when a worker answers a moment late
#    (go.dev/issue/75804, fixed in Go 1.27). Such a run wrote no failing input
#    and found nothing; the target is run once more and only a second failure
#    counts. A run that wrote a failing input, or failed otherwise, fails at once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

list_only=false
fuzztime="${GUARDYN_FUZZTIME:-10s}"
minimizetime="${GUARDYN_FUZZMINIMIZETIME:-1s}"
case "${1:-}" in
  "") ;;
  -list) list_only=true ;;
  -h | --help)
    sed -n '2,22p' "$0"
    exit 0
    ;;
  *) fuzztime="$1" ;;
esac
for t in "$fuzztime" "$minimizetime"; do
  if ! [[ "$t" =~ ^[0-9]+(ms|s|m|h|x)$ ]]; then
    echo "fuzz: '$t' is not a Go duration like 10s or 5m (or a count like 1000x)" >&2
    exit 2
  fi
done

modules=(.)
for m in tools/buildtools infra release; do
  [ -f "$m/go.mod" ] && modules+=("$m")
done

# targets prints "module<TAB>package<TAB>FuzzName" for every fuzz target.
targets() {
  local m pkgs
  for m in "${modules[@]}"; do
    # Packages with test files only: go test -list builds each test binary.
    mapfile -t pkgs < <(cd "$m" && GOWORK=off go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./... 2> >(grep -v "matched no packages" >&2))
    [ "${#pkgs[@]}" -eq 0 ] && continue
    # go test -list prints a package's matching names, then "ok  <pkg> <time>".
    (cd "$m" && GOWORK=off go test -list '^Fuzz' "${pkgs[@]}") | awk -v m="$m" '
      /^Fuzz[A-Za-z0-9_]*$/ { names[n++] = $0; next }
      /^ok[ \t]/ { for (i = 0; i < n; i++) printf "%s\t%s\t%s\n", m, $2, names[i]; n = 0; next }
      /^(FAIL|---|panic)/ { print "fuzz: go test -list failed: " $0 > "/dev/stderr"; exit 1 }
    '
  done
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
targets >"$tmp/targets"
count="$(wc -l <"$tmp/targets")"
if [ "$count" -eq 0 ]; then
  echo "fuzz: no fuzz target found; discovery is broken" >&2
  exit 1
fi
if $list_only; then
  cut -f2,3 "$tmp/targets" | tr '\t' ' '
  exit 0
fi

# fuzz_one runs one target for the time budget.
fuzz_one() {
  (cd "$1" && GOWORK=off go test -run '^$' -fuzz "^${3}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" "$2")
}

# deadline_race reports whether a failed run's output is only the coordinator's
# own deadline (go.dev/issue/75804): the error line and no failing input.
deadline_race() {
  grep -q '^    context deadline exceeded$' "$1" &&
    ! grep -q 'Failing input written' "$1" &&
    ! grep -qE '^(panic:|fatal error:)|^    [^ ].*_test\.go:[0-9]+:' "$1"
}

echo "fuzz: $count targets, $fuzztime each"
failed=0
summary=()
while IFS=$'\t' read -r m pkg name; do
  start=$(date +%s)
  result=FAIL
  for attempt in 1 2; do
    if fuzz_one "$m" "$pkg" "$name" >"$tmp/out" 2>&1; then
      result=ok
      [ "$attempt" -eq 2 ] && result="ok*"
      break
    fi
    deadline_race "$tmp/out" || break
    echo "--- $pkg $name: Go's fuzztime deadline race (no failing input written); running it again"
  done
  if [ "$result" = FAIL ]; then
    failed=$((failed + 1))
    echo "--- $pkg $name failed:"
    cat "$tmp/out"
  fi
  line="$(printf '%-4s %4ds  %s %s' "$result" "$(($(date +%s) - start))" "$pkg" "$name")"
  echo "$line"
  summary+=("$line")
done <"$tmp/targets"

echo "== fuzz summary ($count targets, $fuzztime each; time includes the instrumented build; ok* = passed on the second run after Go's deadline race)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: $failed of $count targets failed" >&2
  exit 1
fi
echo "fuzz: all $count targets passed"
