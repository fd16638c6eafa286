package embedded

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/guardyn/guardyn/libs/kv"
)

// queueBehindBlocker holds the committer in a transaction until n more requests are
// queued, so that they all form one group commit, and returns a func releasing it.
func queueBehindBlocker(t *testing.T, s *Store, n int, enqueue func(i int)) (release func()) {
	t.Helper()
	entered, unblock := make(chan struct{}), make(chan struct{})
	blocked := make(chan error, 1)
	go func() {
		blocked <- s.Update(context.Background(), func(kv.Tx) error {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-unblock
			return nil
		})
	}()
	<-entered
	for i := range n {
		go enqueue(i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(s.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d transactions queued", len(s.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
	return func() {
		close(unblock)
		if err := <-blocked; err != nil {
			t.Errorf("blocking transaction: %v", err)
		}
	}
}

// TestFailingTransactionsDoNotRerunTheirBatch: a group commit where every other
// transaction fails runs each function exactly once, keeps the writes of the successful
// ones and none of the failed ones, and each transaction sees exactly its successful
// predecessors' writes. Before, each failure rolled the batch back and reran every
// transaction before it, so n/2 failures cost O(n²) function calls on the single writer.
func TestFailingTransactionsDoNotRerunTheirBatch(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(context.Background(), func(tx kv.Tx) error {
		return tx.Put([]byte("b/shared"), []byte("initial"))
	}); err != nil {
		t.Fatal(err)
	}
	const n = 200
	errFail := errors.New("refused")
	calls := make([]atomic.Int32, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	wg.Add(n)
	release := queueBehindBlocker(t, s, n, func(i int) {
		defer wg.Done()
		errs[i] = s.Update(context.Background(), func(tx kv.Tx) error {
			calls[i].Add(1)
			// Every transaction reads the shared key, then overwrites it and writes its
			// own; the odd ones also delete the shared key and fail.
			if _, err := tx.Get([]byte("b/shared")); err != nil {
				return fmt.Errorf("shared key missing: %w", err)
			}
			if err := tx.Put([]byte("b/shared"), fmt.Appendf(nil, "%d", i)); err != nil {
				return err
			}
			if err := tx.Put(fmt.Appendf(nil, "b/own/%03d", i), nil); err != nil {
				return err
			}
			if i%2 == 1 {
				if err := tx.Delete([]byte("b/shared")); err != nil {
					return err
				}
				return errFail
			}
			return nil
		})
	})
	release()
	wg.Wait()
	for i := range n {
		if got := calls[i].Load(); got != 1 {
			t.Errorf("transaction %d ran %d times, want once", i, got)
		}
		if want := error(nil); i%2 == 1 {
			if !errors.Is(errs[i], errFail) {
				t.Errorf("transaction %d: %v, want its own error", i, errs[i])
			}
		} else if errs[i] != want {
			t.Errorf("transaction %d: %v", i, errs[i])
		}
	}
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		own, err := kv.ScanPrefix(tx, []byte("b/own/"), 0)
		if err != nil {
			return err
		}
		if len(own) != n/2 {
			t.Errorf("%d transactions' writes kept, want the %d successful ones", len(own), n/2)
		}
		for _, p := range own {
			var i int
			fmt.Sscanf(string(p.Key), "b/own/%d", &i)
			if i%2 == 1 {
				t.Errorf("failed transaction %d left %q", i, p.Key)
			}
		}
		v, err := tx.Get([]byte("b/shared"))
		if err != nil {
			return fmt.Errorf("shared key: %w", err)
		}
		var last int
		fmt.Sscanf(string(v), "%d", &last)
		if last%2 == 1 {
			t.Errorf("shared key holds %q, written by a failed transaction", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestPanicInBatchKeepsNeighbours: a panicking transaction in a group commit is undone
// like a failing one; the others in its batch commit.
func TestPanicInBatchKeepsNeighbours(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 10
	panics := make([]any, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	wg.Add(n)
	release := queueBehindBlocker(t, s, n, func(i int) {
		defer wg.Done()
		defer func() { panics[i] = recover() }()
		errs[i] = s.Update(context.Background(), func(tx kv.Tx) error {
			if err := tx.Put(fmt.Appendf(nil, "p/%d", i), nil); err != nil {
				return err
			}
			if i == n/2 {
				panic("boom")
			}
			return nil
		})
	})
	release()
	wg.Wait()
	for i := range n {
		if (panics[i] != nil) != (i == n/2) || errs[i] != nil {
			t.Errorf("transaction %d: panic %v, error %v", i, panics[i], errs[i])
		}
	}
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte("p/"), 0)
		if len(pairs) != n-1 {
			t.Errorf("%d writes kept, want %d", len(pairs), n-1)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnlyUpdatesDoNotCommit: an Update whose fn writes nothing, alone or in a batch
// with others that write nothing, commits no bbolt transaction (no meta page, no sync);
// one that writes does. Before, every Update committed and synced the file twice, so a
// key-bundle fetch that claimed no one-time key, or a claim that found none, cost the
// single writer as much as a real claim.
func TestReadOnlyUpdatesDoNotCommit(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	txid := func() int {
		var id int
		if err := s.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil }); err != nil {
			t.Fatal(err)
		}
		return id
	}
	if err := s.Update(ctx, func(tx kv.Tx) error { return tx.Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	before := txid()
	read := func(tx kv.Tx) error { _, err := tx.Get([]byte("k")); return err }
	for range 3 {
		if err := s.Update(ctx, read); err != nil {
			t.Fatal(err)
		}
	}
	// A batch of them, queued behind one that holds the writer.
	var wg sync.WaitGroup
	wg.Add(4)
	release := queueBehindBlocker(t, s, 4, func(int) {
		defer wg.Done()
		if err := s.Update(ctx, read); err != nil {
			t.Error(err)
		}
	})
	release()
	wg.Wait()
	if got := txid(); got != before {
		t.Fatalf("read-only Updates committed %d transactions, want none", got-before)
	}
	if err := s.Update(ctx, func(tx kv.Tx) error { return tx.Delete([]byte("k")) }); err != nil {
		t.Fatal(err)
	}
	if got := txid(); got != before+1 {
		t.Fatalf("a writing Update committed %d transactions, want 1", got-before)
	}
}
