package cql_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/cassandratest"
	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/cql"
	"github.com/guardyn/guardyn/libs/msgstore/msgstoretest"
)

func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }

// keyspaces gives each directory the suite opens a keyspace of its own, so that subtests
// do not see each other's inboxes and a reopen finds its data. Creating a keyspace takes
// seconds, so a goroutine migrates the next ones while the tests run.
type keyspaces struct {
	addr  string
	ready chan string
	errs  chan error
	mu    sync.Mutex
	byDir map[string]string
}

func newKeyspaces(tb testing.TB, addr string) *keyspaces {
	k := &keyspaces{addr: addr, ready: make(chan string, 2), errs: make(chan error, 1), byDir: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tb.Cleanup(func() { cancel(); wg.Wait() })
	prefix := fmt.Sprintf("t%d", time.Now().UnixNano()%1e12)
	wg.Go(func() {
		for n := 0; ; n++ {
			ks := fmt.Sprintf("%s_%d", prefix, n)
			if err := cql.Migrate(ctx, k.config(ks)); err != nil {
				if ctx.Err() == nil {
					k.errs <- fmt.Errorf("migrate %s: %w", ks, err)
				}
				return
			}
			select {
			case k.ready <- ks:
			case <-ctx.Done():
				return
			}
		}
	})
	return k
}

func (k *keyspaces) config(ks string) cql.Config {
	return cql.Config{Hosts: []string{k.addr}, Keyspace: ks, Replication: 1}
}

// of returns the configuration of dir's keyspace.
func (k *keyspaces) of(tb testing.TB, dir string) cql.Config {
	tb.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	ks, ok := k.byDir[dir]
	if !ok {
		select {
		case ks = <-k.ready:
		case err := <-k.errs:
			tb.Fatal(err)
		}
		k.byDir[dir] = ks
	}
	return k.config(ks)
}

func opener(tb testing.TB) msgstoretest.Opener {
	k := newKeyspaces(tb, cassandratest.Addr(tb))
	return func(tb testing.TB, dir string, clock func() time.Time) msgstore.Store {
		c := k.of(tb, dir)
		c.Now = clock
		s, err := cql.Open(context.Background(), c)
		if err != nil {
			tb.Fatalf("open: %v", err)
		}
		return s
	}
}

// TestContract runs the msgstore contract suite, unchanged, against a real Cassandra.
func TestContract(t *testing.T) { msgstoretest.Run(t, opener(t)) }

// TestMigrateTwiceAtOnce runs the schema migration from two clients at once on a new
// keyspace, then once more: every run succeeds and the store opens. Before it, Open
// fails with ErrSchema.
func TestMigrateTwiceAtOnce(t *testing.T) {
	addr := cassandratest.Addr(t)
	c := cql.Config{Hosts: []string{addr}, Keyspace: fmt.Sprintf("m%d", time.Now().UnixNano()%1e12), Replication: 1}
	ctx := context.Background()
	if _, err := cql.Open(ctx, c); !errors.Is(err, cql.ErrSchema) {
		t.Fatalf("open before the migration = %v, want ErrSchema", err)
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- cql.Migrate(ctx, c) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent migration: %v", err)
		}
	}
	if err := cql.Migrate(ctx, c); err != nil {
		t.Fatalf("migration of a migrated keyspace: %v", err)
	}
	s, err := cql.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := msgstore.Inbox{UserID: "u", DeviceID: "d"}
	if err := s.Append(ctx, []msgstore.Message{{Inbox: in, ID: msgstore.ID{1}, Body: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx, in); err != nil || n != 1 {
		t.Fatalf("count = %d, %v", n, err)
	}
}

// TestInboxCapUnderConcurrentSenders appends to one inbox from 16 senders over two
// stores, as two servers would, with a cap of 20: exactly 20 messages are stored and
// every other append fails with msgstore.ErrFull.
func TestInboxCapUnderConcurrentSenders(t *testing.T) {
	k := newKeyspaces(t, cassandratest.Addr(t))
	c := k.of(t, t.TempDir())
	c.InboxCap = 20
	ctx := context.Background()
	var stores []*cql.Store
	for range 2 {
		s, err := cql.Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	in := msgstore.Inbox{UserID: "celebrity", DeviceID: "phone"}
	const senders, each = 16, 5
	var mu sync.Mutex
	stored, full := 0, 0
	var wg sync.WaitGroup
	for w := range senders {
		wg.Go(func() {
			for i := range each {
				id := msgstore.ID{byte(w), byte(i), 1}
				err := stores[w%2].Append(ctx, []msgstore.Message{{Inbox: in, ID: id, Body: []byte("hi")}})
				mu.Lock()
				switch {
				case err == nil:
					stored++
				case errors.Is(err, msgstore.ErrFull):
					full++
				default:
					t.Errorf("append: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if stored != c.InboxCap || full != senders*each-c.InboxCap {
		t.Fatalf("%d appends stored and %d refused as full; want %d and %d", stored, full, c.InboxCap, senders*each-c.InboxCap)
	}
	if n, err := stores[0].Count(ctx, in); err != nil || n != c.InboxCap {
		t.Fatalf("count = %d, %v; want %d", n, err, c.InboxCap)
	}
	// An acknowledgement makes room for one more.
	page, err := stores[1].Read(ctx, in, nil, 1, msgstore.MaxReadBytes)
	if err != nil || len(page) != 1 {
		t.Fatalf("read: %d, %v", len(page), err)
	}
	if err := stores[1].Delete(ctx, in, []msgstore.ID{page[0].ID}); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].Append(ctx, []msgstore.Message{{Inbox: in, ID: msgstore.ID{0xff}, Body: []byte("room")}}); err != nil {
		t.Fatalf("append after an ack: %v", err)
	}
}
