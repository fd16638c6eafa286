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
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

list_only=false
fuzztime="${GUARDYN_FUZZTIME:-10s}"
case "${1:-}" in
  "") ;;
  -list) list_only=true ;;
  -h | --help)
    sed -n '2,12p' "$0"
    exit 0
    ;;
  *) fuzztime="$1" ;;
esac
if ! [[ "$fuzztime" =~ ^[0-9]+(ms|s|m|h|x)$ ]]; then
  echo "fuzz: time per target '$fuzztime' is not a Go duration like 10s or 5m (or a count like 1000x)" >&2
  exit 2
fi

modules=(.)
for m in tools/buildtools release; do
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

echo "fuzz: $count targets, $fuzztime each"
failed=0
summary=()
while IFS=$'\t' read -r m pkg name; do
  start=$(date +%s)
  if (cd "$m" && GOWORK=off go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg") >"$tmp/out" 2>&1; then
    result=ok
  else
    result=FAIL
    failed=$((failed + 1))
    echo "--- $pkg $name failed:"
    cat "$tmp/out"
  fi
  line="$(printf '%-4s %4ds  %s %s' "$result" "$(($(date +%s) - start))" "$pkg" "$name")"
  echo "$line"
  summary+=("$line")
done <"$tmp/targets"

echo "== fuzz summary ($count targets, $fuzztime each; time includes the instrumented build)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: $failed of $count targets failed" >&2
  exit 1
fi
echo "fuzz: all $count targets passed"
