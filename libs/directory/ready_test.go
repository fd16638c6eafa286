package directory

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/guardyn/guardyn/libs/bus"
)

// TestBusSourceReadyNeedsResponder: the directory is ready only while a responder (the
// auth service) answers on the bus.
func TestBusSourceReadyNeedsResponder(t *testing.T) {
	b, err := bus.StartEmbedded(testCtx(t), t.TempDir(), bus.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	src := NewBusSource(b.Conn())
	if err := src.Ready(testCtx(t)); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("Ready with no responder = %v; want no responders", err)
	}
	sub, err := b.Conn().Subscribe(bus.SubjectDirectoryDevices, func(m *nats.Msg) { m.Respond(nil) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := src.Ready(testCtx(t)); err != nil {
		t.Fatalf("Ready with a responder: %v", err)
	}
}
