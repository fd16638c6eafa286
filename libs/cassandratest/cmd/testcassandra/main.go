// Command testcassandra runs one Cassandra for a whole test run, so that every package
// of `go test ./...` shares it: it starts Cassandra, writes the address of its CQL port
// to the file named by -addr-file once the port is open, and stops it and removes its
// data on SIGINT or SIGTERM. .ci/run uses it and exports GUARDYN_TEST_CQL.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/guardyn/guardyn/libs/cassandratest"
)

func main() {
	addrFile := flag.String("addr-file", "", "file to write host:port to once Cassandra is up")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t0 := time.Now()
	srv, err := cassandratest.Start(ctx, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcassandra:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "testcassandra: Cassandra %s up at %s in %v (data in %s)\n", cassandratest.Version, srv.Addr(), time.Since(t0).Round(time.Millisecond), srv.Dir())
	if *addrFile != "" {
		err := os.WriteFile(*addrFile+".tmp", []byte(srv.Addr()), 0o644)
		if err == nil {
			err = os.Rename(*addrFile+".tmp", *addrFile)
		}
		if err != nil {
			srv.Stop()
			fmt.Fprintln(os.Stderr, "testcassandra:", err)
			os.Exit(1)
		}
	}
	<-ctx.Done()
	if err := srv.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testcassandra: stop:", err)
		os.Exit(1)
	}
}
