package client_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/client/vault/vaulttest"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// countingConn is a transport that is not a *grpc.ClientConn: it counts the calls it
// carries over another connection, as a gRPC-Web transport would carry them over HTTP.
type countingConn struct {
	next           grpc.ClientConnInterface
	unary, streams atomic.Int64
}

func (c *countingConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	c.unary.Add(1)
	return c.next.Invoke(ctx, method, args, reply, opts...)
}

func (c *countingConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c.streams.Add(1)
	return c.next.NewStream(ctx, desc, method, opts...)
}

// TestClientOnAnotherStorageAndTransport runs a device whose profile lives in a Storage
// that is not files and whose transport is not a grpc.ClientConn, as the browser app's
// does (IndexedDB, gRPC-Web): it registers, sends, receives, keeps its history and opens
// again, with nothing written under its Home and every call through its transport.
func TestClientOnAnotherStorageAndTransport(t *testing.T) {
	p := clienttest.Start(t)
	ctx := clienttest.Context(t)
	store := vaulttest.NewMemory()
	conn := &countingConn{next: p.Conn}
	cfg := p.Config("alice")
	cfg.Home, cfg.Storage, cfg.Conn = t.TempDir(), store, conn
	alice, err := client.Register(ctx, cfg, "alice", "alice's browser")
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := client.Register(ctx, cfg, "alice", "again"); !errors.Is(err, client.ErrProfileExists) {
		t.Fatalf("second Register on the same storage: %v, want ErrProfileExists", err)
	}
	bob := p.Register(t, "bob")
	if _, err := alice.Send(ctx, "bob", "hello from a browser"); err != nil {
		t.Fatal(err)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 1 || evs[0].Body != "hello from a browser" {
		t.Fatalf("bob's events = %+v", evs)
	}
	if _, err := bob.Send(ctx, "alice", "hello browser"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range clienttest.Drain(t, alice) {
		if ev.Kind == client.EventMessage {
			got = append(got, ev.Body)
		}
	}
	if len(got) != 1 || got[0] != "hello browser" {
		t.Fatalf("alice received %q", got)
	}
	alice.Close()

	again, err := client.Open(cfg)
	if err != nil {
		t.Fatalf("open the profile in memory again: %v", err)
	}
	defer again.Close()
	hist, err := again.History("bob")
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, e := range hist {
		if e.Body != "" {
			bodies = append(bodies, e.Body)
		}
	}
	if len(bodies) != 2 || bodies[0] != "hello from a browser" || bodies[1] != "hello browser" {
		t.Fatalf("history = %+v", hist)
	}
	wrong := cfg
	wrong.Passphrase = []byte("wrong")
	if _, err := client.Open(wrong); !errors.Is(err, vault.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if entries, err := os.ReadDir(cfg.Home); err != nil || len(entries) != 0 {
		t.Fatalf("Home holds %d entries (%v): the profile went to files", len(entries), err)
	}
	if conn.unary.Load() == 0 || conn.streams.Load() == 0 {
		t.Fatalf("transport carried %d unary calls and %d streams", conn.unary.Load(), conn.streams.Load())
	}
}
