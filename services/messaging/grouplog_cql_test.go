package messaging_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/cassandratest"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/cql"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// TestMain stops the Cassandra this binary started for its CQL tests, if it started one.
func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }

// keyspaceSeq names the keyspaces this binary migrates, one per node.
var keyspaceSeq atomic.Int64

// cqlInboxes opens a message store on the test Cassandra, in a keyspace of its own
// (migrated here, a few seconds), so that nodes of different tests, whose users have
// the same ids, do not share inboxes.
func cqlInboxes(t testing.TB, _ string, now func() time.Time) msgstore.Store {
	t.Helper()
	c := cql.Config{
		Hosts:       []string{cassandratest.Addr(t)},
		Keyspace:    fmt.Sprintf("m%d_%d", time.Now().UnixNano()%1e12, keyspaceSeq.Add(1)),
		Replication: 1,
		Now:         now,
	}
	ctx := context.Background()
	if err := cql.Migrate(ctx, c); err != nil {
		t.Fatal(err)
	}
	store, err := cql.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// TestGroupLogOnCassandra runs the group log's tests, unchanged, with the message store
// on Cassandra (--messages=cql://...): the entry stored once in the group's inbox and a
// notice per member, one Append per send, expiry with the notices, and a retry after a
// failed write stored once.
func TestGroupLogOnCassandra(t *testing.T) {
	for _, c := range groupLogContract {
		t.Run(c.name, func(t *testing.T) { c.run(t, cqlInboxes) })
	}
}

// BenchmarkGroupSendStores is the group send path, 1 KiB to a group of 10 one-device
// members from 16 concurrent senders, on the embedded message store and on Cassandra:
// one Append of the log entry and its notices per send (TestGroupSendIsOneDurableWrite)
// whatever the store.
func BenchmarkGroupSendStores(b *testing.B) {
	for _, st := range []struct {
		name string
		open inboxOpener
	}{{"embedded", embeddedInboxes}, {"cql", cqlInboxes}} {
		b.Run(st.name, func(b *testing.B) {
			gid := []byte("bench-" + st.name)
			node, users := memberGroupOn(b, st.open, 10, gid)
			payload := mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 1<<10)
			var seq atomic.Uint64
			b.SetParallelism(8) // 16 senders on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					cid := make([]byte, 16)
					binary.BigEndian.PutUint64(cid, seq.Add(1))
					if _, err := node.svc.SendGroupMessage(as(users[0]), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: payload, ClientMessageId: cid}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}
