#!/usr/bin/env bash
# Runs a command with one Apache Cassandra up for all of it, then stops it:
#   tools/ci/with-cassandra.sh go test ./...
# The CQL suites of every package find it through GUARDYN_TEST_CQL, so one
# Cassandra (about 1.5 GB RSS) serves the whole run instead of one per
# package. The jars are fetched by Maven once into a cache keyed by version
# (libs/cassandratest). Without Java or Maven the command runs
# without it, and the CQL suites say they did not run; with CI=true that is
# a failure instead.
set -euo pipefail
cd "$(dirname "$0")/../.."

tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/testcassandra" ./libs/cassandratest/cmd/testcassandra
t0=$(date +%s)
"$tmp/testcassandra" -addr-file "$tmp/addr" &
pid=$!
while [ ! -s "$tmp/addr" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    pid=""
    if [ "${CI:-}" = "true" ]; then
      echo "with-cassandra: Cassandra did not start (see above); CI needs it for the CQL suites" >&2
      exit 1
    fi
    echo "with-cassandra: Cassandra did not start; the CQL suites will say they did not run" >&2
    break
  fi
  sleep 1
done
if [ -n "$pid" ]; then
  export GUARDYN_TEST_CQL="$(cat "$tmp/addr")"
  echo "with-cassandra: Cassandra at $GUARDYN_TEST_CQL, fetched if needed and started in $(( $(date +%s) - t0 )) s"
fi
rc=0
"$@" || rc=$?
exit "$rc"
