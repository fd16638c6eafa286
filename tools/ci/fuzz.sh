#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for a fixed time each, two
# packages at a time with one fuzzing worker each ($GUARDYN_FUZZJOBS sets how
# many: on 2 cores that halves the wall time for the same fuzzing per target),
# and fails if any of them finds a failing input:
#   tools/ci/fuzz.sh             10s per target (CI), or $GUARDYN_FUZZTIME
#   tools/ci/fuzz.sh 5m          the documented campaign (docs/build.md)
#   tools/ci/fuzz.sh -list       print the targets and stop
# Targets are discovered in the test files of every package of every module
# (`func FuzzX(f *testing.F)`), so a new FuzzX is run without being registered
# anywhere. Each package's instrumented test binary is built once and runs
# its targets in turn.
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

# targets prints "module<TAB>package<TAB>dir<TAB>FuzzName" for every fuzz target:
# every `func FuzzX(f *testing.F)` in the test files go list says build on
# this platform. Nothing is compiled to find them (go test -list would link
# every test binary of every module: minutes, for names a grep finds).
targets() {
  local m pkg dir files f
  for m in "${modules[@]}"; do
    while IFS=$'\t' read -r pkg dir files; do
      [ -n "$files" ] || continue
      for f in $files; do
        sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\).*/\1/p' "$dir/$f"
      done | sort -u | while read -r name; do
        printf '%s\t%s\t%s\t%s\n' "$m" "$pkg" "$dir" "$name"
      done
    done < <(cd "$m" && GOWORK=off go list -f '{{.ImportPath}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./... 2> >(grep -v "matched no packages" >&2))
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
  cut -f2,4 "$tmp/targets" | tr '\t' ' '
  exit 0
fi

# The fuzzing engine keeps what it learns per package under the build cache,
# where `go test -fuzz` keeps it.
fuzzcache="$(go env GOCACHE)/fuzz"

# fuzz_one runs one target of a built test binary for the time budget, with
# one fuzzing worker, in its package's directory (for testdata/fuzz): targets
# run $jobs at a time, so together they keep the cores busy.
fuzz_one() {
  (cd "$3" && "$1" -test.run '^$' -test.fuzz "^${4}\$" -test.fuzztime "$fuzztime" -test.fuzzminimizetime "$minimizetime" \
    -test.parallel 1 -test.timeout 10m -test.fuzzcachedir "$fuzzcache/$2")
}

# deadline_race reports whether a failed run's output is only the coordinator's
# own deadline (go.dev/issue/75804): the error line and no failing input.
deadline_race() {
  grep -q '^    context deadline exceeded$' "$1" &&
    ! grep -q 'Failing input written' "$1" &&
    ! grep -qE '^(panic:|fatal error:)|^    [^ ].*_test\.go:[0-9]+:' "$1"
}

# run_target runs target number i with the test binary bin and writes its
# summary line to line.i, and its output to out.i when it failed.
run_target() {
  local i="$1" bin="$2" pkg="$3" dir="$4" name="$5" start result attempt
  start=$(date +%s)
  result=FAIL
  for attempt in 1 2; do
    if fuzz_one "$bin" "$pkg" "$dir" "$name" >"$tmp/run.$i" 2>&1; then
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

# run_package builds one package's instrumented test binary once (go test -c
# -fuzz: the coverage instrumentation -fuzz adds) and runs its targets, given
# as "i<TAB>name" lines, one after another. A build that fails fails each of
# its targets with the build's output.
run_package() {
  local m="$1" pkg="$2" dir="$3" list="$4" bin i name start
  bin="$tmp/bin/$(echo "$pkg" | tr '/' '_').test"
  start=$(date +%s)
  if ! (cd "$m" && GOWORK=off go test -c -fuzz . -o "$bin" "$pkg") >"$tmp/build.$pkg_n" 2>&1; then
    while IFS=$'\t' read -r i name; do
      cp "$tmp/build.$pkg_n" "$tmp/out.$i"
      printf '%-4s %4ds  %s %s (the instrumented build failed)\n' FAIL 0 "$pkg" "$name" | tee "$tmp/line.$i"
    done <"$list"
    return
  fi
  echo "     $(printf '%4ds' "$(($(date +%s) - start))")  $pkg: instrumented test binary built"
  while IFS=$'\t' read -r i name; do
    run_target "$i" "$bin" "$pkg" "$dir" "$name"
  done <"$list"
  rm -f "$bin"
}

echo "fuzz: $count targets, $fuzztime each, $jobs packages at a time"
mkdir -p "$tmp/bin"
# One job per package, the packages with the most targets first, so that the
# longest jobs do not start last.
awk -F'\t' '{ print NR "\t" $0 }' "$tmp/targets" >"$tmp/numbered"
cut -f2,3,4 "$tmp/numbered" | sort | uniq -c | sort -k1,1nr -k2 | awk '{ print $2 "\t" $3 "\t" $4 }' >"$tmp/packages"
pkg_n=0
running=0
while IFS=$'\t' read -r m pkg dir; do
  pkg_n=$((pkg_n + 1))
  awk -F'\t' -v m="$m" -v p="$pkg" '$2 == m && $3 == p { print $1 "\t" $5 }' "$tmp/numbered" >"$tmp/list.$pkg_n"
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_package "$m" "$pkg" "$dir" "$tmp/list.$pkg_n" &
  running=$((running + 1))
done <"$tmp/packages"
wait

# The verdict comes from the files, in discovery order, not from the jobs'
# exit codes: a target with no summary line did not run to the end.
failed=0
summary=()
for n in $(seq 1 "$count"); do
  if [ -f "$tmp/out.$n" ]; then
    echo "--- $(sed -n "${n}p" "$tmp/targets" | cut -f2,4 | tr '\t' ' ') failed:"
    cat "$tmp/out.$n"
  fi
  if [ ! -s "$tmp/line.$n" ]; then
    failed=$((failed + 1))
    summary+=("$(printf 'FAIL    -   %s (no result)' "$(sed -n "${n}p" "$tmp/targets" | cut -f2,4 | tr '\t' ' ')")")
    continue
  fi
  line="$(cat "$tmp/line.$n")"
  case "$line" in FAIL*) failed=$((failed + 1)) ;; esac
  summary+=("$line")
done

echo "== fuzz summary ($count targets, $fuzztime each, $jobs at a time; times exclude each package's instrumented build; ok* = passed on the second run after Go's deadline race)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: $failed of $count targets failed" >&2
  exit 1
fi
echo "fuzz: all $count targets passed"
