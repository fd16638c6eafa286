package platform_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore/cql"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// startOnCassandra starts the all-in-one server with its inboxes on the Cassandra that
// tools/ci/with-cassandra.sh started (GUARDYN_TEST_CQL), in a keyspace of its own made
// by the schema migration. Without one it skips saying so, or fails under CI=true.
func startOnCassandra(t *testing.T) *env {
	t.Helper()
	addr := os.Getenv("GUARDYN_TEST_CQL")
	if addr == "" {
		msg := "Cassandra suite DID NOT RUN: GUARDYN_TEST_CQL is not set; run under tools/ci/with-cassandra.sh (needs openjdk-17-jre-headless and maven)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	uri := fmt.Sprintf("cql://%s/p%d?replication=1", addr, time.Now().UnixNano()%1e12)
	c, err := cql.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := cql.Migrate(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return startWith(t, func(c *platform.Config) { c.Messages = uri })
}

// TestMessagingOnCassandra runs the messaging scenarios of the embedded default with
// the inboxes on Cassandra (--messages=cql://...): backlog, live, ack, redelivery of
// unacknowledged messages and idempotent sends behave the same.
func TestMessagingOnCassandra(t *testing.T) {
	t.Run("BacklogThenLiveThenAck", func(t *testing.T) { backlogThenLiveThenAck(t, startOnCassandra(t)) })
	t.Run("UnackedMessagesComeBackAndSendsAreIdempotent", func(t *testing.T) {
		unackedMessagesComeBackAndSendsAreIdempotent(t, startOnCassandra(t))
	})
}
