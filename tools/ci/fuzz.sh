#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for a fixed time each, two at
# a time with one fuzzing worker each ($GUARDYN_FUZZJOBS sets how many: on 2
# cores that halves the wall time for the same fuzzing per target), and
# fails if any of them finds a failing input:
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
jobs="${GUARDYN_FUZZJOBS:-2}"
case "${1:-}" in
  "") ;;
  -list) list_only=true ;;
  -h | --help)
    sed -n '2,24p' "$0"
    exit 0
    ;;
  *) fuzztime="$1" ;;
esac
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: GUARDYN_FUZZJOBS='$jobs' is not a positive count" >&2
  exit 2
fi
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

# fuzz_one runs one target for the time budget, with one fuzzing worker:
# targets run $jobs at a time, so together they keep the cores busy.
fuzz_one() {
  (cd "$1" && GOWORK=off go test -run '^$' -fuzz "^${3}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" -parallel 1 "$2")
}

# deadline_race reports whether a failed run's output is only the coordinator's
# own deadline (go.dev/issue/75804): the error line and no failing input.
deadline_race() {
  grep -q '^    context deadline exceeded$' "$1" &&
    ! grep -q 'Failing input written' "$1" &&
    ! grep -qE '^(panic:|fatal error:)|^    [^ ].*_test\.go:[0-9]+:' "$1"
}

# run_target runs target number i and writes its summary line to line.i,
# and its output to out.i when it failed.
run_target() {
  local i="$1" m="$2" pkg="$3" name="$4" start result attempt
  start=$(date +%s)
  result=FAIL
  for attempt in 1 2; do
    if fuzz_one "$m" "$pkg" "$name" >"$tmp/run.$i" 2>&1; then
      result=ok
      [ "$attempt" -eq 2 ] && result="ok*"
      break
    fi
    deadline_race "$tmp/run.$i" || break
    echo "--- $pkg $name: Go's fuzztime deadline race (no failing input written); running it again"
  done
  [ "$result" = FAIL ] && mv "$tmp/run.$i" "$tmp/out.$i"
  printf '%-4s %4ds  %s %s\n' "$result" "$(($(date +%s) - start))" "$pkg" "$name" | tee "$tmp/line.$i"
}

echo "fuzz: $count targets, $fuzztime each, $jobs at a time"
i=0
running=0
while IFS=$'\t' read -r m pkg name; do
  i=$((i + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$i" "$m" "$pkg" "$name" &
  running=$((running + 1))
done <"$tmp/targets"
wait

# The verdict comes from the files, in discovery order, not from the jobs'
# exit codes: a target with no summary line did not run to the end.
failed=0
summary=()
for n in $(seq 1 "$count"); do
  if [ -f "$tmp/out.$n" ]; then
    echo "--- $(sed -n "${n}p" "$tmp/targets" | cut -f2,3 | tr '\t' ' ') failed:"
    cat "$tmp/out.$n"
  fi
  if [ ! -s "$tmp/line.$n" ]; then
    failed=$((failed + 1))
    summary+=("$(printf 'FAIL    -   %s (no result)' "$(sed -n "${n}p" "$tmp/targets" | cut -f2,3 | tr '\t' ' ')")")
    continue
  fi
  line="$(cat "$tmp/line.$n")"
  case "$line" in FAIL*) failed=$((failed + 1)) ;; esac
  summary+=("$line")
done

echo "== fuzz summary ($count targets, $fuzztime each, $jobs at a time; time includes the instrumented build; ok* = passed on the second run after Go's deadline race)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: $failed of $count targets failed" >&2
  exit 1
fi
echo "fuzz: all $count targets passed"
