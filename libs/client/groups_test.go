package client_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// groupView is what a drain showed of group traffic, in order: "joined trip",
// "changed trip", "removed trip", or "trip <from>: <text>".
func groupView(evs []client.Event) []string {
	var out []string
	for _, ev := range evs {
		switch ev.Kind {
		case client.EventGroupJoined:
			out = append(out, "joined "+ev.Group)
		case client.EventGroupChanged:
			out = append(out, "changed "+ev.Group)
		case client.EventGroupRemoved:
			out = append(out, "removed "+ev.Group)
		case client.EventMessage:
			if ev.Group != "" {
				out = append(out, fmt.Sprintf("%s %s: %s", ev.Group, ev.From, ev.Body))
			}
		case client.EventUndecryptable:
			out = append(out, "undecryptable: "+ev.Err.Error())
		}
	}
	return out
}

func wantView(t *testing.T, who string, c *client.Client, want ...string) {
	t.Helper()
	got := groupView(clienttest.Drain(t, c))
	if !slices.Equal(got, want) {
		t.Fatalf("%s saw\n  %s\nwant\n  %s", who, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestGroupChatEndToEnd (issue 12, items 1-4 of the user story): over real gRPC, alice
// creates "trip" with bob (on two devices) and carol; everyone chats; dave joins and sees
// only what follows; carol is removed and told so, then re-added; bob updates his keys;
// two members commit in the same epoch and the loser catches up and succeeds on its own;
// a member who was away catches up on every commit and message in order.
func TestGroupChatEndToEnd(t *testing.T) {
	p := clienttest.Start(t)
	ctx := clienttest.Context(t)
	alice, bob, carol, dave := p.Register(t, "alice"), p.Register(t, "bob"), p.Register(t, "carol"), p.Register(t, "dave")
	bob2 := p.Link(t, bob, "bob-laptop")
	clienttest.Drain(t, bob) // bob's phone learns of the laptop it approved

	if err := alice.CreateGroup(ctx, "trip", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2, "carol": carol} {
		wantView(t, name, c, "joined trip")
	}
	if _, err := alice.SendGroup(ctx, "trip", "hello trip"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob2.SendGroup(ctx, "trip", "from the laptop"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "bob", bob, "trip alice: hello trip", "trip bob: from the laptop")
	wantView(t, "bob2", bob2, "trip alice: hello trip")
	wantView(t, "alice", alice, "trip bob: from the laptop")
	wantView(t, "carol", carol, "trip alice: hello trip", "trip bob: from the laptop")

	members, err := alice.GroupMembers(ctx, "trip")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, m := range members {
		listed = append(listed, fmt.Sprintf("%s/%d %s", m.Username, m.DeviceID, m.Status))
	}
	if len(members) != 4 || !slices.Contains(listed, "alice/1 this device") || !slices.ContainsFunc(listed, func(s string) bool { return strings.HasPrefix(s, "carol/") && strings.HasSuffix(s, " verified") }) {
		t.Fatalf("alice lists the members as %q", listed)
	}

	// dave joins and sees only what follows.
	if err := alice.GroupAdd(ctx, "trip", "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, "trip", "welcome dave"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "dave", dave, "joined trip", "trip alice: welcome dave")
	wantView(t, "bob", bob, "changed trip", "trip alice: welcome dave")

	// carol is removed: her client says so, she can no longer send, and reads nothing new.
	if err := alice.GroupRemove(ctx, "trip", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, "trip", "carol cannot read this"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "carol", carol, "changed trip", "trip alice: welcome dave", "removed trip")
	if _, err := carol.SendGroup(ctx, "trip", "still here?"); !errors.Is(err, client.ErrRemovedFromGroup) {
		t.Fatalf("carol's send after her removal: %v, want ErrRemovedFromGroup", err)
	}

	// bob updates his keys; then bob's laptop and dave commit in the same epoch: dave's
	// commit loses, and dave catches up and updates on the new epoch by himself.
	if err := bob.GroupUpdate(ctx, "trip"); err != nil {
		t.Fatal(err)
	}
	if err := dave.GroupUpdate(ctx, "trip"); err != nil {
		t.Fatalf("dave's update after losing the epoch: %v", err)
	}
	if _, err := dave.SendGroup(ctx, "trip", "dave after the race"); err != nil {
		t.Fatal(err)
	}

	// carol is re-added and reads again.
	if err := alice.GroupAdd(ctx, "trip", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, "trip", "welcome back carol"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "carol", carol, "joined trip", "trip alice: welcome back carol")

	// bob's laptop was away for all of it, a week by its clock: it catches up on every
	// commit and message in order.
	cfg := p.Config("bob-laptop")
	cfg.Now = func() time.Time { return time.Now().Add(7 * 24 * time.Hour) }
	bob2, err = client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bob2.Close)
	wantView(t, "bob2", bob2,
		"changed trip", "trip alice: welcome dave",
		"changed trip", "trip alice: carol cannot read this",
		"changed trip", "changed trip", "trip dave: dave after the race",
		"changed trip", "trip alice: welcome back carol")
}

// TestGroupsArePostQuantum (issue 19 item 3): a new group is on the X-Wing suite (0x004D,
// ML-KEM-768 + X25519, Ed25519 signatures), on the creator's and on a joiner's device, and
// the joiner can read it.
func TestGroupsArePostQuantum(t *testing.T) {
	p := clienttest.Start(t)
	ctx := clienttest.Context(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	if err := alice.CreateGroup(ctx, "pq", "bob"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "bob", bob, "joined pq")
	for name, c := range map[string]*client.Client{"alice": alice, "bob": bob} {
		got, err := c.GroupSuiteForTest("pq")
		if err != nil {
			t.Fatal(err)
		}
		if got != 0x004D {
			t.Fatalf("%s's group is on suite %#04x, want X-Wing 0x004D", name, got)
		}
	}
	if _, err := alice.SendGroup(ctx, "pq", "after the quantum computer"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "bob", bob, "pq alice: after the quantum computer")
}
