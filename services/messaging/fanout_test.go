package messaging_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/msgstore"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// failingInboxes is the real message store with a switch that makes Append fail, as a
// full disk or a crash between the two stores would leave it.
type failingInboxes struct {
	msgstore.Store
	fail atomic.Bool
}

func (f *failingInboxes) Append(ctx context.Context, msgs []msgstore.Message) error {
	if f.fail.Load() {
		return errors.New("injected: message store unavailable")
	}
	return f.Store.Append(ctx, msgs)
}

// node is one messaging process over a data dir: real stores on disk, embedded NATS.
type node struct {
	svc     *messaging.Server
	inboxes *failingInboxes
	close   func()
}

func startNode(t *testing.T, dir string) *node {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	groups, err := kvembedded.Open(filepath.Join(dir, kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := msgembedded.Open(filepath.Join(dir, msgembedded.DirName), msgembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.StartEmbedded(context.Background(), filepath.Join(dir, "nats"), bus.EmbeddedOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	inboxes := &failingInboxes{Store: store}
	svc, err := messaging.New(messaging.Config{
		Inboxes: inboxes, Groups: groups, Directory: staticDirectory{aliceID: {1, 2}, bobID: {1, 2, 3}},
		Conn: b.Conn(), Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{svc: svc, inboxes: inboxes}
	n.close = func() {
		svc.Close()
		b.Close()
		store.Close()
		groups.Close()
	}
	return n
}

// readInbox returns the deliveries stored for one device, in order.
func readInbox(t *testing.T, svc *messaging.Server, s msgstore.Store, in msgstore.Inbox) []*messagingv1.Delivery {
	t.Helper()
	msgs, err := s.Read(context.Background(), in, nil, msgstore.MaxBatch, msgstore.MaxReadBytes)
	if err != nil {
		t.Fatal(err)
	}
	out, err := svc.StoredDeliveriesForTest(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range out {
		if d == nil {
			t.Fatalf("inbox entry %d does not resolve to a delivery", i)
		}
	}
	return out
}

// TestCommitFanOutSurvivesACrash (issue 18, finding 4): two commits are accepted while
// the message store refuses writes, then the process stops. The epoch advance and the
// fan-out it owes were one kv transaction, so the restarted service delivers both
// commits, in epoch order, to every other member; the committer's retry of its accepted
// commit succeeds instead of meeting EPOCH_CONFLICT, and stores nothing twice.
func TestCommitFanOutSurvivesACrash(t *testing.T) {
	dir := t.TempDir()
	asBob := authn.NewContext(context.Background(), authn.Principal{UserID: bobID, DeviceID: 1})
	first := startNode(t, dir)
	gid := []byte("crash-group")
	if _, err := first.svc.CreateGroup(asAlice(), &messagingv1.CreateGroupRequest{GroupId: gid, GroupInfo: []byte("gi0"),
		Members: []*commonv1.DeviceAddress{addr(aliceID, 1), addr(bobID, 1), addr(bobID, 2)}}); err != nil {
		t.Fatal(err)
	}
	first.inboxes.fail.Store(true)
	commits := []*messagingv1.SubmitCommitRequest{
		{GroupId: gid, Epoch: 0, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("gi1")},
		{GroupId: gid, Epoch: 1, Commit: mlsframe.PrivateMessage(gid, 1, mlsframe.Commit, 0), GroupInfo: []byte("gi2"), Welcome: mlsframe.Welcome(mlsframe.Ref(1)),
			Added: []*commonv1.DeviceAddress{addr(bobID, 3)}, WelcomeRecipients: []*commonv1.DeviceAddress{addr(bobID, 3)}},
	}
	for i, c := range commits {
		resp, err := first.svc.SubmitCommit(asAlice(), c)
		if err != nil {
			t.Fatalf("commit %d while the message store is down: %v (the epoch advance must not depend on it)", i, err)
		}
		if resp.GetEpoch() != uint64(i+1) {
			t.Fatalf("commit %d moved the group to epoch %d", i, resp.GetEpoch())
		}
	}
	if n, _ := first.inboxes.Count(context.Background(), inbox(bobID, 1)); n != 0 {
		t.Fatalf("bob has %d deliveries although every Append failed", n)
	}
	first.close()

	second := startNode(t, dir)
	defer second.close()
	deadline := time.Now().Add(30 * time.Second)
	for _, in := range []msgstore.Inbox{inbox(bobID, 1), inbox(bobID, 2), inbox(bobID, 3)} {
		want := 2
		if in == inbox(bobID, 3) {
			want = 1 // the Welcome notice only
		}
		for {
			n, err := second.inboxes.Count(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if n == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v holds %d deliveries after the restart, want %d", in, n, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	got := readInbox(t, second.svc, second.inboxes, inbox(bobID, 1))
	for i, d := range got {
		if d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT || string(d.GetPayload()) != string(commits[i].GetCommit()) || d.GetEpoch() != uint64(i) {
			t.Fatalf("bob's delivery %d is a %v of epoch %d: %q", i, d.GetKind(), d.GetEpoch(), d.GetPayload())
		}
	}
	if w := readInbox(t, second.svc, second.inboxes, inbox(bobID, 3)); w[0].GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME || w[0].GetEpoch() != 2 {
		t.Fatalf("the added device got a %v of epoch %d", w[0].GetKind(), w[0].GetEpoch())
	}
	welcome, err := second.svc.FetchWelcome(authn.NewContext(context.Background(), authn.Principal{UserID: bobID, DeviceID: 3}), &messagingv1.FetchWelcomeRequest{GroupId: gid})
	if err != nil || string(welcome.GetWelcome()) != string(commits[1].GetWelcome()) {
		t.Fatalf("FetchWelcome after the restart: %q, %v", welcome.GetWelcome(), err)
	}

	// The committer never saw its answer to commit 1: the retry succeeds.
	resp, err := second.svc.SubmitCommit(asAlice(), commits[1])
	if err != nil || resp.GetEpoch() != 2 {
		t.Fatalf("retry of the accepted commit: epoch %d, %v", resp.GetEpoch(), err)
	}
	// Bob's commit for the same epoch still loses.
	if _, err := second.svc.SubmitCommit(asBob, &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 1, Commit: commits[1].GetCommit(), GroupInfo: []byte("gi2")}); err == nil {
		t.Fatal("another device's commit for an ended epoch was accepted")
	}
	if n, _ := second.inboxes.Count(context.Background(), inbox(bobID, 1)); n != 2 {
		t.Fatalf("after the retry bob holds %d deliveries, want 2", n)
	}
}
