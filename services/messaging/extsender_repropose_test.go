package messaging_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/crypto/mls"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// mutableDirectory is a device directory whose accounts a test deletes while the
// service reads it.
type mutableDirectory struct {
	mu       sync.Mutex
	accounts map[string][]uint32
}

func (d *mutableDirectory) Devices(_ context.Context, userID string) ([]uint32, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	devs, ok := d.accounts[userID]
	return slices.Clone(devs), ok, nil
}

func (d *mutableDirectory) delete(userID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.accounts, userID)
}

// TestCommitReproposesRemovalOnce: bob's account is deleted and no proposal of the auth
// event reached the group (as when a member committed before holding it); alice's next
// commit makes the service propose bob's removal for the epoch it opens, once: a late
// auth event for the same epoch adds no second copy, and the proposal removes bob's leaf.
func TestCommitReproposesRemovalOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	groups, err := kvembedded.Open(filepath.Join(dir, kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { groups.Close() })
	store, err := msgembedded.Open(filepath.Join(dir, msgembedded.DirName), msgembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b, err := bus.StartEmbedded(ctx, filepath.Join(dir, "nats"), bus.EmbeddedOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	directory := &mutableDirectory{accounts: map[string][]uint32{aliceID: {1}, bobID: {1}}}
	svc, err := messaging.New(messaging.Config{Inboxes: store, Groups: groups, Directory: directory, Conn: b.Conn(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })

	anyCred := func(uint16, []byte, [][]byte, []byte) error { return nil }
	alice, err := mls.NewIdentity(mls.DefaultCipherSuite, testCredential(aliceID, 1))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := mls.NewIdentity(mls.DefaultCipherSuite, testCredential(bobID, 1))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := bob.NewKeyPackage(0, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	gid := []byte("club")
	g, err := mls.NewGroup(alice, gid, anyCred)
	if err != nil {
		t.Fatal(err)
	}
	g.PrivateHandshake = true
	gi0, err := g.GroupInfo(true)
	if err != nil {
		t.Fatal(err)
	}
	created, err := svc.CreateGroup(asAlice(), &messagingv1.CreateGroupRequest{GroupId: gid, GroupInfo: gi0, Members: []*commonv1.DeviceAddress{addr(aliceID, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := mls.ParseExternalSender(created.GetExternalSender())
	if err != nil {
		t.Fatal(err)
	}
	g.SetTrustedExternalSenders([][]byte{ds.SignatureKey})
	commit := func(opts mls.CommitOptions, added ...*commonv1.DeviceAddress) {
		t.Helper()
		epoch := g.Epoch()
		res, err := g.Commit(opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.MergePendingCommit(); err != nil {
			t.Fatal(err)
		}
		gi, err := g.GroupInfo(true)
		if err != nil {
			t.Fatal(err)
		}
		req := &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: epoch, Commit: res.Commit, GroupInfo: gi, Added: added}
		if len(added) > 0 {
			req.Welcome, req.WelcomeRecipients = res.Welcome, added
		}
		if _, err := svc.SubmitCommit(asAlice(), req); err != nil {
			t.Fatal(err)
		}
	}
	commit(mls.CommitOptions{Add: [][]byte{kp.Bytes()}, GroupContextExtensions: []mls.Extension{mls.ExternalSendersExtension([]mls.ExternalSender{ds})}}, addr(bobID, 1))
	proposals := func() [][]byte {
		t.Helper()
		var out [][]byte
		for _, d := range readInbox(t, svc, store, inbox(aliceID, 1)) {
			if d.GetKind() == messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_PROPOSAL {
				out = append(out, d.GetPayload())
			}
		}
		return out
	}
	if got := proposals(); len(got) != 0 {
		t.Fatalf("alice got %d proposals while bob exists, want none", len(got))
	}

	directory.delete(bobID)
	commit(mls.CommitOptions{UpdatePath: true})
	got := proposals()
	if len(got) != 1 {
		t.Fatalf("after her commit alice got %d proposals of bob's removal for epoch %d, want one", len(got), g.Epoch())
	}
	if err := svc.ProposeRemovalsForTest(ctx, bobID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	if again := proposals(); len(again) != 1 || !slices.Equal(again[0], got[0]) {
		t.Fatalf("after a late auth event alice holds %d proposals for epoch %d, want the one she had", len(again), g.Epoch())
	}
	r, err := g.Process(got[0])
	if err != nil || !r.Proposal {
		t.Fatalf("alice's group refused the service's proposal: %+v %v", r, err)
	}
	if _, err := g.Commit(mls.CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	ms := g.Members()
	if len(ms) != 1 {
		t.Fatalf("after the commit including the proposal the group has %d members, want alice alone", len(ms))
	}
	for _, m := range ms {
		if slices.Equal(m, testCredential(bobID, 1)) {
			t.Fatal("bob's device is still a member")
		}
	}
}
