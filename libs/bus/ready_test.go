package bus

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestReadyNeedsJetStream: a NATS server that accepts connections but has no JetStream
// cannot hold a single durable event, so the bus is not ready on it.
func TestReadyNeedsJetStream(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	b, err := Connect(ns.ClientURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Ready(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "jetstream") {
		t.Fatalf("Ready without JetStream = %v; want an error naming jetstream", err)
	}
	if err := startBus(t, t.TempDir(), EmbeddedOptions{}).Ready(testCtx(t)); err != nil {
		t.Fatalf("Ready with JetStream: %v", err)
	}
}
