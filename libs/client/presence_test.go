package client_test

import (
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// TestStatusTextReachesOnlyContacts: bob shares his presence with alice, whose device gets his
// status key over their session; she reads his text, the server holds only sealed bytes, and
// carol, to whom bob never gave the key, cannot read it even once bob shows her his presence.
// Dropping alice makes a new key, so bob's next text is unreadable with the one she has.
func TestStatusTextReachesOnlyContacts(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob, carol := p.Register(t, "alice"), p.Register(t, "bob"), p.Register(t, "carol")
	ctx := clienttest.Context(t)
	for _, c := range []*client.Client{alice, carol} {
		if err := c.SetPresencePrivacy(ctx, "everyone", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := bob.SetPresencePrivacy(ctx, "contacts", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	gotKey := false
	if err := alice.Listen(ctx, true, func(ev client.Event) { gotKey = gotKey || ev.Kind == client.EventStatusKey && ev.From == "bob" }); err != nil {
		t.Fatal(err)
	}
	if !gotKey {
		t.Fatal("alice's listen reported no status key from bob")
	}
	if err := bob.SetStatus(ctx, "busy", "in a meeting"); err != nil {
		t.Fatal(err)
	}
	show := func(c *client.Client) client.Presence {
		t.Helper()
		ps, err := c.GetPresence(ctx, []string{"bob"})
		if err != nil {
			t.Fatal(err)
		}
		return ps[0]
	}
	if got := show(alice); got.Status != "busy" || got.Text != "in a meeting" {
		t.Fatalf("alice sees %+v", got)
	}

	// Carol is let in to the coarse status but never got a key.
	if err := bob.SetPresencePrivacy(ctx, "everyone", nil); err != nil {
		t.Fatal(err)
	}
	if got := show(carol); got.Status != "busy" || got.Text != "" || !got.TextLocked {
		t.Fatalf("carol sees %+v", got)
	}
	// Bob dropped alice from his key sharing (everyone shares with nobody): his next text is
	// sealed under a new key alice does not have.
	if err := bob.SetStatus(ctx, "away", "back soon"); err != nil {
		t.Fatal(err)
	}
	// A change reaches readers within a second, not necessarily by the time SetStatus
	// returns (a CI run read the previous state once): wait for it, then look at its text.
	got := show(alice)
	for deadline := time.Now().Add(5 * time.Second); got.Status != "away" && time.Now().Before(deadline); got = show(alice) {
		time.Sleep(20 * time.Millisecond)
	}
	if got.Status != "away" || got.Text != "" || !got.TextLocked {
		t.Fatalf("after the key changed alice sees %+v", got)
	}
}
