package crashtest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/cassandratest"
	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/cql"
)

// TestKillAndRestart kills Cassandra (SIGKILL) while appenders run, then starts it
// again on the same data: while it is down every call fails with
// msgstore.ErrUnavailable and Ready says so; afterwards every message whose Append was
// acknowledged is there, and retrying the ones that failed stores each exactly once.
// It runs a Cassandra of its own, since it kills it.
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a Cassandra of its own (about a minute); run without -short")
	}
	if err := cassandratest.Available(); err != nil {
		cassandratest.Unavailable(t, err)
	}
	ctx := context.Background()
	t0 := time.Now()
	srv, err := cassandratest.Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Cassandra up in %v", time.Since(t0))
	defer srv.Stop()
	c := cql.Config{Hosts: []string{srv.Addr()}, Keyspace: "fault", Replication: 1, Timeout: 5 * time.Second}
	if err := cql.Migrate(ctx, c); err != nil {
		t.Fatal(err)
	}
	s, err := cql.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	in := msgstore.Inbox{UserID: "bob", DeviceID: "phone"}
	msg := func(n int) msgstore.Message {
		var id msgstore.ID
		binary.BigEndian.PutUint64(id[8:], uint64(n))
		return msgstore.Message{Inbox: in, ID: id, Body: binary.BigEndian.AppendUint64(nil, uint64(n)), Timestamp: time.Unix(int64(n), 0)}
	}
	var (
		mu               sync.Mutex
		acked, failed    []int
		unavailableCalls atomic.Int32
		otherErr         error // under mu
		next             atomic.Int64
		stop             = make(chan struct{})
	)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := int(next.Add(1))
				err := s.Append(ctx, []msgstore.Message{msg(n)})
				mu.Lock()
				if err == nil {
					acked = append(acked, n)
				} else {
					failed = append(failed, n)
				}
				mu.Unlock()
				if err != nil {
					if errors.Is(err, msgstore.ErrUnavailable) {
						unavailableCalls.Add(1)
					} else {
						mu.Lock()
						otherErr = err
						mu.Unlock()
					}
					time.Sleep(500 * time.Millisecond)
				}
			}
		})
	}
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt()
	// Kill once some appends were acknowledged; let the appenders meet the dead server.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 40 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for unavailableCalls.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if unavailableCalls.Load() == 0 {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no append failed with ErrUnavailable while Cassandra was down (other error: %v)", otherErr)
	}
	if err := s.Ready(ctx); !errors.Is(err, msgstore.ErrUnavailable) {
		t.Errorf("Ready with Cassandra down = %v, want msgstore.ErrUnavailable", err)
	}
	if _, err := s.Read(ctx, in, nil, 10, 1<<20); !errors.Is(err, msgstore.ErrUnavailable) {
		t.Errorf("Read with Cassandra down = %v, want msgstore.ErrUnavailable", err)
	}
	t0 = time.Now()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Cassandra restarted in %v", time.Since(t0))
	// The driver reconnects by itself; wait until appends go through again.
	deadline = time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 80 && s.Ready(ctx) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("appends did not resume within 2 minutes of the restart (%d acknowledged)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	halt()
	if otherErr != nil {
		t.Errorf("an append failed with an error other than ErrUnavailable: %v", otherErr)
	}

	stored := func() map[int]int {
		got := map[int]int{}
		var cursor msgstore.Cursor
		for {
			page, err := s.Read(ctx, in, cursor, 500, msgstore.MaxReadBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				return got
			}
			for _, m := range page {
				got[int(binary.BigEndian.Uint64(m.Body))]++
			}
			cursor = page[len(page)-1].Cursor
		}
	}
	got := stored()
	for _, n := range acked {
		if got[n] != 1 {
			t.Errorf("acknowledged message %d is stored %d times after the restart", n, got[n])
		}
	}
	// Retry what failed, as clients do: each is then stored once, none twice.
	for start := 0; start < len(failed); start += 256 {
		var retry []msgstore.Message
		for _, n := range failed[start:min(start+256, len(failed))] {
			retry = append(retry, msg(n))
		}
		if err := s.Append(ctx, retry); err != nil {
			t.Fatalf("retry of %d messages: %v", len(retry), err)
		}
	}
	got = stored()
	for _, n := range append(acked, failed...) {
		if got[n] != 1 {
			t.Errorf("message %d is stored %d times after the retries", n, got[n])
		}
	}
	if count, err := s.Count(ctx, in); err != nil || count != len(acked)+len(failed) {
		t.Errorf("count = %d, %v; want %d", count, err, len(acked)+len(failed))
	}
	t.Logf("%d appends acknowledged, %d failed while Cassandra was down and were retried", len(acked), len(failed))
}
