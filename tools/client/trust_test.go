package client_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/tools/client"
	"github.com/guardyn/guardyn/tools/client/clienttest"
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
