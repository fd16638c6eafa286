// Command cqlschema creates or migrates the CQL schema of the message store, once per
// keyspace, before the servers start with --messages=cql://...:
//
//	cqlschema 'cql://h1:9042,h2:9042/guardyn?dc=dc1&replication=3'
//
// The address comes from the argument or GUARDYN_MESSAGES. The schema is versioned; the
// command is idempotent and safe to run from several places at once (see
// libs/msgstore/cql.Migrate). It exits non-zero, naming the store, when it cannot.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore/cql"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv("GUARDYN_MESSAGES"), os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, env string, stdout, stderr io.Writer) int {
	addr := env
	switch len(args) {
	case 0:
	case 1:
		addr = args[0]
	default:
		fmt.Fprintln(stderr, "usage: cqlschema [cql://host:port,.../keyspace?dc=...&replication=N] (or GUARDYN_MESSAGES)")
		return 2
	}
	if addr == "" {
		fmt.Fprintln(stderr, "cqlschema: no address: pass cql://host:port,.../keyspace or set GUARDYN_MESSAGES")
		return 2
	}
	c, err := cql.ParseURI(addr)
	if err != nil {
		fmt.Fprintln(stderr, "cqlschema:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := cql.Migrate(ctx, c); err != nil {
		fmt.Fprintf(stderr, "cqlschema: message store %s: %v\n", addr, err)
		return 1
	}
	fmt.Fprintf(stdout, "cqlschema: keyspace %s is at schema version %d\n", c.Keyspace, cql.SchemaVersion)
	return 0
}
