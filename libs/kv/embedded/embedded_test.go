package embedded_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/kv/kvtest"
)

func open(tb testing.TB, dir string) kv.Store {
	tb.Helper()
	s, err := embedded.Open(filepath.Join(dir, embedded.FileName), embedded.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	kvtest.Run(t, open)
}

func BenchmarkStore(b *testing.B) {
	kvtest.Benchmark(b, open)
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), embedded.FileName)
	s, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if s2, err := embedded.Open(path, embedded.Options{}); err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v to fail", d)
	}
}

func TestPanicReachesCaller(t *testing.T) {
	s, err := embedded.Open(filepath.Join(t.TempDir(), embedded.FileName), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the panic value", v)
			}
		}()
		s.Update(context.Background(), func(tx kv.Tx) error {
			tx.Put([]byte("p/k"), []byte("v"))
			panic("boom")
		})
	}()
	// The committer survives and the panicking transaction left nothing behind.
	if err := s.Update(context.Background(), func(tx kv.Tx) error { return tx.Put([]byte("p/ok"), nil) }); err != nil {
		t.Fatalf("Update after panic: %v", err)
	}
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		_, err := tx.Get([]byte("p/k"))
		return err
	}); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("write of panicking transaction: %v, want kv.ErrNotFound", err)
	}
}

func TestUpdateNoWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), embedded.FileName)
	var mu sync.Mutex
	var asyncErrs []error
	s, err := embedded.Open(path, embedded.Options{OnAsyncError: func(err error) {
		mu.Lock()
		asyncErrs = append(asyncErrs, err)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateNoWait(func(tx kv.Tx) error { return tx.Put([]byte("n/1"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateNoWait(func(tx kv.Tx) error { return tx.Put(nil, nil) }); err != nil {
		t.Fatal(err)
	}
	// Close commits what is queued, so the write is durable after reopening.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateNoWait(func(kv.Tx) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("UpdateNoWait after Close = %v, want kv.ErrClosed", err)
	}
	mu.Lock()
	if len(asyncErrs) != 1 || !errors.Is(asyncErrs[0], kv.ErrEmptyKey) {
		t.Errorf("async errors = %v, want one kv.ErrEmptyKey", asyncErrs)
	}
	mu.Unlock()
	s, err = embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		_, err := tx.Get([]byte("n/1"))
		return err
	}); err != nil {
		t.Fatalf("queued write after reopen: %v", err)
	}
}
