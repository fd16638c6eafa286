package client_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/tools/clienttest"
)

func TestSendReceiveReceipt(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	id, err := alice.Send(ctx, "bob", "hello bob")
	if err != nil {
		t.Fatal(err)
	}
	evs := clienttest.Drain(t, bob)
	if len(evs) != 1 || evs[0].Kind != client.EventMessage || evs[0].Body != "hello bob" || evs[0].From != "alice" || evs[0].ID != id {
		t.Fatalf("bob's events = %+v", evs)
	}
	evs = clienttest.Drain(t, alice)
	if len(evs) != 1 || evs[0].Kind != client.EventReceipt || evs[0].Ref != id || evs[0].From != "bob" {
		t.Fatalf("alice's events = %+v", evs)
	}
	// The receipt was bob's first reply: alice's next message is a plain session message.
	if _, err := alice.Send(ctx, "bob", "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, "alice", "reply"); err != nil {
		t.Fatal(err)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 1 || evs[0].Body != "second" {
		t.Fatalf("bob's second drain = %+v", evs)
	}
	evs = clienttest.Drain(t, alice)
	var bodies []string
	for _, ev := range evs {
		if ev.Kind == client.EventMessage {
			bodies = append(bodies, ev.Body)
		}
	}
	if len(bodies) != 1 || bodies[0] != "reply" {
		t.Fatalf("alice's messages = %q (events %+v)", bodies, evs)
	}
	hist, err := alice.History("bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) < 3 {
		t.Fatalf("alice's history has %d entries: %+v", len(hist), hist)
	}
}

func TestOpenProfile(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	who, err := alice.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	if who.Username != "alice" || who.DeviceID != 1 || who.UserID == "" || who.Fingerprint == "" {
		t.Fatalf("whoami = %+v", who)
	}
	cfg := p.Config("alice")
	again, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	cfg.Passphrase = []byte("wrong")
	if _, err := client.Open(cfg); !errors.Is(err, vault.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: err = %v", err)
	}
	if _, err := client.Open(p.Config("nobody")); !errors.Is(err, client.ErrNoProfile) {
		t.Fatalf("missing profile: err = %v", err)
	}
	if _, err := client.Register(clienttest.Context(t), p.Config("alice"), "alice2", "x"); !errors.Is(err, client.ErrProfileExists) {
		t.Fatalf("register over a profile: err = %v", err)
	}
	if _, err := alice.Send(clienttest.Context(t), "alice", "me"); !errors.Is(err, client.ErrSelf) {
		t.Fatalf("send to self: err = %v", err)
	}
}

// TestConcurrentProcessesShareProfile sends from several Clients opened on one profile at
// once, as separate CLI processes would: the profile lock keeps sessions consistent, so
// every message decrypts on the other side.
func TestConcurrentProcessesShareProfile(t *testing.T) {
	p := clienttest.Start(t)
	p.Register(t, "alice")
	bob := p.Register(t, "bob")
	const procs, each = 3, 4
	var wg sync.WaitGroup
	for i := range procs {
		c, err := client.Open(p.Config("alice"))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for j := range each {
				if _, err := c.Send(clienttest.Context(t), "bob", fmt.Sprintf("p%d-m%d", i, j)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got := map[string]bool{}
	for _, ev := range clienttest.Drain(t, bob) {
		if ev.Kind != client.EventMessage {
			t.Errorf("unexpected event %+v", ev)
		}
		got[ev.Body] = true
	}
	if len(got) != procs*each {
		t.Fatalf("bob decrypted %d distinct messages, want %d", len(got), procs*each)
	}
}

// TestLinkRejected: an existing device refuses a link; the new device learns it and its
// half-made profile is removed, so linking can start over.
func TestLinkRejected(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	ctx := clienttest.Context(t)
	c, req, err := client.StartLink(ctx, p.Config("intruder"), "alice", "not alice's")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Send(ctx, "alice", "too early"); !errors.Is(err, client.ErrLinkPending) {
		t.Fatalf("send before approval: err = %v, want ErrLinkPending", err)
	}
	if err := alice.Reject(ctx, req.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLink(ctx, 10*time.Millisecond); !errors.Is(err, client.ErrLinkRejected) {
		t.Fatalf("wait: err = %v, want ErrLinkRejected", err)
	}
	if _, err := client.Open(p.Config("intruder")); !errors.Is(err, client.ErrNoProfile) {
		t.Fatalf("profile after rejection: err = %v, want ErrNoProfile", err)
	}
	devs, err := alice.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 {
		t.Fatalf("alice has %d devices after a rejected link", len(devs))
	}
}
