package cql_test

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/guardyn/guardyn/libs/cassandratest"
	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/cql"
	"github.com/guardyn/guardyn/libs/msgstore/msgstoretest"
)

func BenchmarkStore(b *testing.B) { msgstoretest.Benchmark(b, opener(b)) }

// counter counts the requests the driver sends: statements, and batches as one round
// trip each.
type counter struct{ statements, roundTrips atomic.Int64 }

func (c *counter) ObserveQuery(context.Context, gocql.ObservedQuery) {
	c.statements.Add(1)
	c.roundTrips.Add(1)
}

func (c *counter) ObserveBatch(_ context.Context, q gocql.ObservedBatch) {
	c.statements.Add(int64(len(q.Statements)))
	c.roundTrips.Add(1)
}

// BenchmarkSendPath measures the store's share of one 1:1 message: an Append of one
// message followed by its acknowledgement Delete, with and without the inbox cap,
// reporting statements and client round trips per message and the time per message.
func BenchmarkSendPath(b *testing.B) {
	k := newKeyspaces(b, cassandratest.Addr(b))
	for _, capped := range []bool{false, true} {
		name := "nocap"
		if capped {
			name = "cap=1000"
		}
		b.Run(name, func(b *testing.B) {
			c := k.of(b, b.TempDir())
			if capped {
				c.InboxCap = 1000
			}
			var n counter
			c.Tune = func(cl *gocql.ClusterConfig) { cl.QueryObserver, cl.BatchObserver = &n, &n }
			s, err := cql.Open(context.Background(), c)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var appendStmts, appendTrips int64
			b.ResetTimer()
			for i := range b.N {
				var id msgstore.ID
				binary.BigEndian.PutUint64(id[:], uint64(i))
				in := msgstore.Inbox{UserID: "u", DeviceID: string(rune('a' + i%16))}
				m := msgstore.Message{Inbox: in, ID: id, Body: make([]byte, 200), Timestamp: time.Now(), Expiry: time.Now().Add(time.Hour)}
				s0, r0 := n.statements.Load(), n.roundTrips.Load()
				if err := s.Append(ctx, []msgstore.Message{m}); err != nil {
					b.Fatal(err)
				}
				appendStmts += n.statements.Load() - s0
				appendTrips += n.roundTrips.Load() - r0
				if err := s.Delete(ctx, in, []msgstore.ID{id}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(appendStmts)/float64(b.N), "append-stmts/msg")
			b.ReportMetric(float64(appendTrips)/float64(b.N), "append-trips/msg")
			b.ReportMetric(float64(n.statements.Load())/float64(b.N), "stmts/msg")
			b.ReportMetric(float64(n.roundTrips.Load())/float64(b.N), "trips/msg")
		})
	}
}
