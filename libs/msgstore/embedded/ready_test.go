package embedded

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// TestReadyReportsAFailedWrite: once a write fails the store refuses every write until
// reopened, and Ready says so, so that /readyz takes the process out of service instead
// of answering ready while every send fails.
func TestReadyReportsAFailedWrite(t *testing.T) {
	// The disk fails every sync once the toggle is on, as a failing disk does.
	failing := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData {
			return errorfs.ErrInjected
		}
		return nil
	})}
	s, err := Open(t.TempDir(), Options{fs: errorfs.Wrap(vfs.Default, failing)})
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
	failing.On()
	if err := s.Append(ctx, msg(2)); err == nil {
		t.Fatal("Append whose sync failed succeeded")
	}
	if err := s.Ready(ctx); err == nil {
		t.Fatal("Ready after a failed write: nil, want the write error")
	}
	if err := s.Append(ctx, msg(3)); err == nil {
		t.Fatal("Append after a failed write succeeded")
	}
	failing.Off()
	s.Close()
	if err := s.Ready(ctx); !errors.Is(err, msgstore.ErrClosed) {
		t.Fatalf("Ready after Close: %v, want msgstore.ErrClosed", err)
	}
}
