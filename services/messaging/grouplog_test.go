package messaging_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// perMemberBytes is what a group message may store per member device besides the one
// copy of its body: the notice and the inbox's fixed fields.
const perMemberBytes = 128

// TestGroupMessageIsStoredOnce (issue 12): a group message to 100 member devices is
// written once, plus a fixed-size notice per device, where it used to be copied into
// every inbox (100 body writes); every member's inbox still delivers the whole message.
func TestGroupMessageIsStoredOnce(t *testing.T) {
	gid := []byte("stored-once")
	node, users := memberGroup(t, 101, gid)
	payload := mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 64<<10)
	kv0, in0 := node.kv.written.Load(), node.inboxes.written.Load()
	if _, err := node.svc.SendGroupMessage(as(users[0]), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: payload, ClientMessageId: bytes.Repeat([]byte{7}, 16)}); err != nil {
		t.Fatal(err)
	}
	written := node.kv.written.Load() - kv0 + node.inboxes.written.Load() - in0
	if bound := int64(2*len(payload) + perMemberBytes*100); written > bound {
		t.Fatalf("a %d-byte group message to 100 devices wrote %d bytes; the bound is 2 × size + %d per device = %d", len(payload), written, perMemberBytes, bound)
	}
	t.Logf("a %d-byte group message to 100 devices wrote %d bytes (%.2f × its size)", len(payload), written, float64(written)/float64(len(payload)))
	for _, u := range []string{users[1], users[50], users[100]} {
		got := readInbox(t, node.svc, node.inboxes, inbox(u, 1))
		if len(got) != 1 || got[0].GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE || !bytes.Equal(got[0].GetPayload(), payload) || !bytes.Equal(got[0].GetGroupId(), gid) {
			t.Fatalf("%s's inbox delivers %d entries, the first a %v of %d bytes", u, len(got), got[0].GetKind(), len(got[0].GetPayload()))
		}
	}
	if got := readInbox(t, node.svc, node.inboxes, inbox(users[0], 1)); len(got) != 0 {
		t.Fatalf("the sender's own inbox got %d entries", len(got))
	}
}

// TestGroupCommitIsStoredOnce: the same holds for commits, which the fan-out delivers.
func TestGroupCommitIsStoredOnce(t *testing.T) {
	gid := []byte("commit-once")
	node, users := memberGroup(t, 101, gid)
	commit := mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 64<<10)
	kv0, in0 := node.kv.written.Load(), node.inboxes.written.Load()
	if _, err := node.svc.SubmitCommit(as(users[0]), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: commit, GroupInfo: []byte("g")}); err != nil {
		t.Fatal(err)
	}
	// The fan-out runs before SubmitCommit returns; its outbox entry holds the commit
	// once more, and the group record is rewritten.
	written := node.kv.written.Load() - kv0 + node.inboxes.written.Load() - in0
	if bound := int64(3*len(commit) + perMemberBytes*100 + 8<<10); written > bound {
		t.Fatalf("a %d-byte commit to 100 devices wrote %d bytes; the bound is %d", len(commit), written, bound)
	}
	got := readInbox(t, node.svc, node.inboxes, inbox(users[100], 1))
	if len(got) != 1 || got[0].GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT || !bytes.Equal(got[0].GetPayload(), commit) {
		t.Fatalf("a member's inbox delivers %d entries", len(got))
	}
}

// TestGroupLogExpires: a log entry is swept once its TTL has passed, and its notices
// expire with it, so no inbox points at a swept entry.
func TestGroupLogExpires(t *testing.T) {
	gid := []byte("expiring")
	node, users := memberGroup(t, 3, gid)
	if _, err := node.svc.SendGroupMessage(as(users[0]), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 10), ClientMessageId: bytes.Repeat([]byte{1}, 16)}); err != nil {
		t.Fatal(err)
	}
	if n, err := node.svc.SweepLogForTest(context.Background()); err != nil || n != 0 {
		t.Fatalf("a fresh entry was swept: %d, %v", n, err)
	}
	node.clock.Add(messaging.DefaultMessageTTL - time.Minute)
	if n, _ := node.svc.SweepLogForTest(context.Background()); n != 0 {
		t.Fatalf("swept %d entries before their TTL", n)
	}
	if got := readInbox(t, node.svc, node.inboxes, inbox(users[1], 1)); len(got) != 1 {
		t.Fatalf("before expiry the member has %d deliveries", len(got))
	}
	node.clock.Add(2 * time.Minute)
	if n, err := node.svc.SweepLogForTest(context.Background()); err != nil || n != 1 {
		t.Fatalf("after the TTL the sweep deleted %d entries, %v; want 1", n, err)
	}
}

// TestGroupSendRetryAfterLostLogEntry: the log entry and the notices are written at the
// same time; when the entry's write fails the send fails, and the sender's retry (same
// client message id) writes the entry the notices already name, so every member reads
// the message exactly once.
func TestGroupSendRetryAfterLostLogEntry(t *testing.T) {
	gid := []byte("retry")
	node, users := memberGroup(t, 3, gid)
	req := &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 0), ClientMessageId: bytes.Repeat([]byte{3}, 16)}
	node.kv.fail.Store(true)
	if _, err := node.svc.SendGroupMessage(as(users[0]), req); err == nil {
		t.Fatal("the send succeeded although its log entry could not be stored")
	}
	node.kv.fail.Store(false)
	node.clock.Add(3 * time.Second) // the retry comes later: the same entry all the same
	if _, err := node.svc.SendGroupMessage(as(users[0]), req); err != nil {
		t.Fatal(err)
	}
	for _, u := range users[1:] {
		got := readInbox(t, node.svc, node.inboxes, inbox(u, 1))
		if len(got) != 1 || !bytes.Equal(got[0].GetPayload(), req.GetPrivateMessage()) {
			t.Fatalf("%s reads %d deliveries", u, len(got))
		}
	}
}
