package cassandratest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the Cassandra this test binary started, if any: one per binary, started on
// first use by Addr and stopped by Main.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Addr returns the host:port of the Cassandra the tests use: $GUARDYN_TEST_CQL, or one
// this test binary starts on first use. When none can run, it skips tb saying why and
// how to install what is missing, or fails tb when CI=true, so CI cannot pass without
// running the suites.
func Addr(tb testing.TB) string {
	tb.Helper()
	if a := os.Getenv(EnvAddr); a != "" {
		return a
	}
	shared.once.Do(func() {
		shared.srv, shared.err = Start(context.Background(), "")
	})
	if shared.err != nil {
		Unavailable(tb, shared.err)
	}
	return shared.srv.Addr()
}

// Unavailable ends tb because no Cassandra could run: a failure under CI=true, else a
// skip that says the suite did not run and what to install.
func Unavailable(tb testing.TB, err error) {
	tb.Helper()
	msg := fmt.Sprintf("Cassandra suite DID NOT RUN: %v; to run it: %s", err, Install)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, msg)
	tb.Skip(msg)
}

// Main runs m and then stops the Cassandra that Addr started, if any; use it as
// os.Exit(cassandratest.Main(m)) in TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	return code
}
