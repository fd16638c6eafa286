package client_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// TestChangedDeviceKey: a known device of a known account presents another identity key
// than the pinned one. Sends refuse naming the device, its messages are held and reported,
// and trust restores both directions.
func TestChangedDeviceKey(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "first contact"); err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, bob)
	clienttest.Drain(t, alice)

	other, err := keys.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.RepinForTest("bob", 1, other.Public().Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, "alice", "held until trusted"); err != nil {
		t.Fatal(err)
	}
	evs := clienttest.Drain(t, alice)
	warn := slices.IndexFunc(evs, func(ev client.Event) bool { return ev.Kind == client.EventIdentityChanged })
	if warn < 0 || len(evs) != 1 {
		t.Fatalf("alice's events = %+v, want only an identity warning", evs)
	}
	var changed *client.IdentityChangedError
	if !errors.As(evs[warn].Err, &changed) || changed.AccountReplaced || !slices.Equal(changed.Devices, []uint32{1}) {
		t.Fatalf("warning error = %v, want device 1 of bob changed", evs[warn].Err)
	}
	if _, err := alice.Send(ctx, "bob", "refused"); !errors.As(err, &changed) || !slices.Equal(changed.Devices, []uint32{1}) {
		t.Fatalf("send: err = %v, want IdentityChangedError for device 1", err)
	}
	n, err := alice.SafetyNumber(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if n.Changed == nil {
		t.Fatal("safety number does not flag the changed key")
	}
	if err := alice.Trust(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := messages(clienttest.Drain(t, alice)); !slices.Equal(got, []string{"held until trusted"}) {
		t.Fatalf("after trust alice got %q", got)
	}
	if _, err := alice.Send(ctx, "bob", "trusted again"); err != nil {
		t.Fatal(err)
	}
	if got := messages(clienttest.Drain(t, bob)); !slices.Equal(got, []string{"trusted again"}) {
		t.Fatalf("bob got %q", got)
	}
}

func messages(evs []client.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind == client.EventMessage {
			out = append(out, ev.Body)
		}
	}
	return out
}

// TestSimultaneousFirstMessages: alice and bob write to each other before either has
// received anything, so each starts a session of its own. Both first messages decrypt, and
// the conversation goes on with no message lost in either direction.
func TestSimultaneousFirstMessages(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "a1"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, "alice", "b1"); err != nil {
		t.Fatal(err)
	}
	want := map[*client.Client][]string{alice: {"b1"}, bob: {"a1"}}
	for round := 2; round <= 4; round++ {
		for c, w := range want {
			evs := clienttest.Drain(t, c)
			if got := messages(evs); !slices.Equal(got, w) {
				t.Fatalf("round %d: got %q, want %q", round, got, w)
			}
			for _, ev := range evs {
				if ev.Kind == client.EventUndecryptable {
					t.Fatalf("round %d: undecryptable delivery: %v", round, ev.Err)
				}
			}
		}
		a, b := fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)
		if _, err := alice.Send(ctx, "bob", a); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Send(ctx, "alice", b); err != nil {
			t.Fatal(err)
		}
		want = map[*client.Client][]string{alice: {b}, bob: {a}}
	}
}
