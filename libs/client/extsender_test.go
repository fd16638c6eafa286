package client_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// memberNames lists the user id of each member device of a group as c sees it.
func memberNames(t *testing.T, c *client.Client, group string) []string {
	t.Helper()
	ms, err := c.GroupMembers(clienttest.Context(t), group)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.UserID)
	}
	return out
}

// TestDeletedAccountLeavesGroups (issue 19 item 2, RFC 9420 §12.1.8.1): over real gRPC,
// bob (on two devices) deletes his account; the delivery service proposes the removal of
// both his leaves as the group's external sender, and the next commit of a member (carol
// updating her keys) removes them, though nobody removed bob by hand.
func TestDeletedAccountLeavesGroups(t *testing.T) {
	p := clienttest.Start(t)
	ctx := clienttest.Context(t)
	alice, bob, carol := p.Register(t, "alice"), p.Register(t, "bob"), p.Register(t, "carol")
	p.Link(t, bob, "bob-laptop")
	clienttest.Drain(t, bob)
	if err := alice.CreateGroup(ctx, "club", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "carol", carol, "joined club")
	if got := memberNames(t, alice, "club"); len(got) != 4 {
		t.Fatalf("club has %q, want alice, bob twice, carol", got)
	}
	who, err := bob.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	// The service's proposals arrive asynchronously (after the auth event): carol reads
	// until she holds them; then her next commit, an update, removes bob's two devices.
	deadline := time.Now().Add(60 * time.Second)
	for {
		clienttest.Drain(t, carol)
		n, err := carol.NextCommitRemovesForTest("club")
		if err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol's next commit would remove %d devices, want bob's 2", n)
		}
		time.Sleep(time.Second)
	}
	if err := carol.GroupUpdate(ctx, "club"); err != nil {
		t.Fatal(err)
	}
	if got := memberNames(t, carol, "club"); len(got) != 2 || slices.Contains(got, who.UserID) {
		t.Fatalf("after her commit carol sees %q, want alice and carol", got)
	}
	clienttest.Drain(t, alice)
	if got := memberNames(t, alice, "club"); len(got) != 2 || slices.Contains(got, who.UserID) {
		t.Fatalf("after carol's commit alice sees %q, want alice and carol", got)
	}
	if _, err := alice.SendGroup(ctx, "club", "bob is gone"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "carol", carol, "club alice: bob is gone")
}

// TestExternalProposalFromAnotherKeyRefused: a group member accepts external proposals
// signed by the delivery service's published key only; a Remove signed by any other key
// (here a fresh Ed25519 key, as a member or attacker could make) is refused.
func TestExternalProposalFromAnotherKeyRefused(t *testing.T) {
	p := clienttest.Start(t)
	ctx := clienttest.Context(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	if err := alice.CreateGroup(ctx, "club", "bob"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "bob", bob, "joined club")
	gid, epoch, err := bob.GroupIDEpochForTest("club")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := mls.NewIdentity(mls.DefaultCipherSuite, []byte("guardyn delivery service"))
	if err != nil {
		t.Fatal(err)
	}
	prop, err := rogue.ProposeExternal(gid, epoch, 0, mls.RemoveProposal(0))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"alice": alice, "bob": bob} {
		if err := c.ProcessGroupMessageForTest("club", prop); err == nil {
			t.Fatalf("%s accepted a Remove signed by another key than the service's", name)
		}
	}
	// A member that lists another key as an external sender (to remove members in the
	// service's name) has its commit refused by the others.
	if err := alice.AddExternalSenderForTest(ctx, "club", rogue.ExternalSender()); err != nil {
		t.Fatal(err)
	}
	evs := clienttest.Drain(t, bob)
	if len(evs) != 1 || evs[0].Kind != client.EventUndecryptable || !errors.Is(evs[0].Err, mls.ErrUntrustedExternalSender) {
		t.Fatalf("bob saw %q for a commit listing another external sender, want it refused as untrusted", groupView(evs))
	}
}

// TestDeletedAccountLeavesGroupsAfterStaleProposal (issue 19 item 2): the service's
// proposals are for the epoch the group had when bob deleted his account. Carol commits
// an update before reading them, so they are stale; the service proposes the removals
// again for the epoch her commit opened, and alice's next commit removes both of bob's
// devices.
func TestDeletedAccountLeavesGroupsAfterStaleProposal(t *testing.T) {
	p := clienttest.Start(t)
	ctx := clienttest.Context(t)
	alice, bob, carol := p.Register(t, "alice"), p.Register(t, "bob"), p.Register(t, "carol")
	p.Link(t, bob, "bob-laptop")
	clienttest.Drain(t, bob)
	if err := alice.CreateGroup(ctx, "club", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "carol", carol, "joined club")
	who, err := bob.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	// alice holds the service's proposals: they exist, for the current epoch.
	waitRemovals := func(c *client.Client, name string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			clienttest.Drain(t, c)
			n, err := c.NextCommitRemovesForTest("club")
			if err != nil {
				t.Fatal(err)
			}
			if n == 2 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's next commit would remove %d devices, want bob's 2", name, n)
			}
			time.Sleep(time.Second)
		}
	}
	waitRemovals(alice, "alice")
	// carol has read none of them: her update leaves bob in the group.
	if n, err := carol.NextCommitRemovesForTest("club"); err != nil || n != 0 {
		t.Fatalf("carol holds %d removals (%v) before reading her inbox, want 0", n, err)
	}
	if err := carol.GroupUpdate(ctx, "club"); err != nil {
		t.Fatal(err)
	}
	if got := memberNames(t, carol, "club"); len(got) != 4 {
		t.Fatalf("after carol's update she sees %q, want bob's devices still in", got)
	}
	// alice's proposals died with carol's commit; the service's new ones let alice's
	// next commit remove bob.
	waitRemovals(alice, "alice")
	if err := alice.GroupUpdate(ctx, "club"); err != nil {
		t.Fatal(err)
	}
	if got := memberNames(t, alice, "club"); len(got) != 2 || slices.Contains(got, who.UserID) {
		t.Fatalf("after her commit alice sees %q, want alice and carol", got)
	}
	clienttest.Drain(t, carol)
	if got := memberNames(t, carol, "club"); len(got) != 2 || slices.Contains(got, who.UserID) {
		t.Fatalf("after alice's commit carol sees %q, want alice and carol", got)
	}
	if _, err := carol.SendGroup(ctx, "club", "bob is gone"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "alice", alice, "club carol: bob is gone")
}
