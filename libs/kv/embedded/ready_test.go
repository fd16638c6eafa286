package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
)

// TestReadyNeedsAWorkingWriter: Ready passes on a healthy store, fails within its deadline
// while the single writer is stuck, and fails once the store is closed.
func TestReadyNeedsAWorkingWriter(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready of a healthy store: %v", err)
	}
	entered, unblock := make(chan struct{}), make(chan struct{})
	stuck := make(chan error, 1)
	go func() {
		stuck <- s.Update(context.Background(), func(kv.Tx) error {
			close(entered)
			<-unblock
			return nil
		})
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	err = s.Ready(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ready with a stuck writer: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Ready took %v past its deadline", d)
	}
	close(unblock)
	if err := <-stuck; err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Ready(context.Background()); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Ready after Close: %v, want kv.ErrClosed", err)
	}
}
