package embedded

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// TestReadyReportsAFailedWrite: once a write fails the store refuses every write until
// reopened, and Ready says so, so that /readyz takes the process out of service instead
// of answering ready while every send fails.
func TestReadyReportsAFailedWrite(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in := msgstore.Inbox{UserID: "u", DeviceID: "1"}
	msg := func(id byte) []msgstore.Message {
		return []msgstore.Message{{Inbox: in, ID: msgstore.ID{id}, Body: []byte("body"), Timestamp: time.Unix(1, 0)}}
	}
	if err := s.Append(ctx, msg(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready of a healthy store: %v", err)
	}
	// Make the next write fail: the segment's file is gone from under the store, as
	// with a failing disk.
	s.active().f.Close()
	if err := s.Append(ctx, msg(2)); err == nil {
		t.Fatal("Append to a closed segment file succeeded")
	}
	if err := s.Ready(ctx); err == nil {
		t.Fatal("Ready after a failed write: nil, want the write error")
	}
	s.Close()
	if err := s.Ready(ctx); !errors.Is(err, msgstore.ErrClosed) {
		t.Fatalf("Ready after Close: %v, want msgstore.ErrClosed", err)
	}
}
