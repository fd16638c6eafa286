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

// groupLogContract is what the group log promises on any message store: every test
// here runs on the embedded default under its own name, and on Cassandra in
// TestGroupLogOnCassandra.
var groupLogContract = []struct {
	name string
	run  func(*testing.T, inboxOpener)
}{
	{"MessageIsStoredOnce", groupMessageIsStoredOnce},
	{"CommitIsStoredOnce", groupCommitIsStoredOnce},
	{"LogExpires", groupLogExpires},
	{"SendIsOneDurableWrite", groupSendIsOneDurableWrite},
	{"SendRetryAfterFailedWrite", groupSendRetryAfterFailedWrite},
}

// perMemberBytes is what a group message may store per member device besides the one
// copy of its body: the notice and the inbox's fixed fields.
const perMemberBytes = 128

// TestGroupMessageIsStoredOnce (issue 12): a group message to 100 member devices is
// written once, plus a fixed-size notice per device, where it used to be copied into
// every inbox (100 body writes); every member's inbox still delivers the whole message.
func TestGroupMessageIsStoredOnce(t *testing.T) { groupMessageIsStoredOnce(t, embeddedInboxes) }

func groupMessageIsStoredOnce(t *testing.T, open inboxOpener) {
	gid := []byte("stored-once")
	node, users := memberGroupOn(t, open, 101, gid)
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
func TestGroupCommitIsStoredOnce(t *testing.T) { groupCommitIsStoredOnce(t, embeddedInboxes) }

func groupCommitIsStoredOnce(t *testing.T, open inboxOpener) {
	gid := []byte("commit-once")
	node, users := memberGroupOn(t, open, 101, gid)
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

// TestGroupLogExpires: a log entry expires with its notices, after the message TTL, so
// no inbox points at an expired entry and no entry outlives its notices.
func TestGroupLogExpires(t *testing.T) { groupLogExpires(t, embeddedInboxes) }

func groupLogExpires(t *testing.T, open inboxOpener) {
	gid := []byte("expiring")
	node, users := memberGroupOn(t, open, 3, gid)
	cid := bytes.Repeat([]byte{1}, 16)
	if _, err := node.svc.SendGroupMessage(as(users[0]), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 10), ClientMessageId: cid}); err != nil {
		t.Fatal(err)
	}
	entries := func() int {
		ids, _, err := node.inboxes.ReadIDs(context.Background(), messaging.GroupLogInboxForTest(gid), nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(ids)
	}
	if n := entries(); n != 1 {
		t.Fatalf("the group's log holds %d entries after one message, want 1", n)
	}
	node.clock.Add(messaging.DefaultMessageTTL - time.Minute)
	if got := readInbox(t, node.svc, node.inboxes, inbox(users[1], 1)); len(got) != 1 || entries() != 1 {
		t.Fatalf("before expiry the member has %d deliveries and the log %d entries", len(got), entries())
	}
	node.clock.Add(2 * time.Minute)
	if got := readInbox(t, node.svc, node.inboxes, inbox(users[1], 1)); len(got) != 0 || entries() != 0 {
		t.Fatalf("after the TTL the member has %d deliveries and the log %d entries, want none", len(got), entries())
	}
}

// TestGroupSendIsOneDurableWrite (docs/perf-groups.md): a group message costs its sender
// one durable write, the log entry and every member's notice in one Append of the
// message store (one fsync wait), and no kv transaction; it used to wait for a kv commit
// of the entry (two fsyncs in bbolt) before the notices' own.
func TestGroupSendIsOneDurableWrite(t *testing.T) { groupSendIsOneDurableWrite(t, embeddedInboxes) }

func groupSendIsOneDurableWrite(t *testing.T, open inboxOpener) {
	gid := []byte("one-write")
	node, users := memberGroupOn(t, open, 101, gid)
	kv0, in0 := node.kv.updates.Load(), node.inboxes.appends.Load()
	if _, err := node.svc.SendGroupMessage(as(users[0]), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 1<<10), ClientMessageId: bytes.Repeat([]byte{5}, 16)}); err != nil {
		t.Fatal(err)
	}
	if kvs, appends := node.kv.updates.Load()-kv0, node.inboxes.appends.Load()-in0; kvs != 0 || appends != 1 {
		t.Fatalf("a group message to 100 devices made %d kv transactions and %d appends; want 0 and 1", kvs, appends)
	}
	if got := readInbox(t, node.svc, node.inboxes, inbox(users[100], 1)); len(got) != 1 || len(got[0].GetPayload()) == 0 {
		t.Fatalf("the last member reads %d deliveries", len(got))
	}
}

// TestGroupSendRetryAfterFailedWrite: when the durable write of a group message fails,
// the send fails and stores nothing; the sender's retry (same client message id) stores
// the entry and its notices once, and every member reads the message exactly once, also
// after a second retry.
func TestGroupSendRetryAfterFailedWrite(t *testing.T) {
	groupSendRetryAfterFailedWrite(t, embeddedInboxes)
}

func groupSendRetryAfterFailedWrite(t *testing.T, open inboxOpener) {
	gid := []byte("retry")
	node, users := memberGroupOn(t, open, 3, gid)
	req := &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 0), ClientMessageId: bytes.Repeat([]byte{3}, 16)}
	node.inboxes.fail.Store(true)
	if _, err := node.svc.SendGroupMessage(as(users[0]), req); err == nil {
		t.Fatal("the send succeeded although it could not be stored")
	}
	node.inboxes.fail.Store(false)
	for _, u := range users[1:] {
		if got := readInbox(t, node.svc, node.inboxes, inbox(u, 1)); len(got) != 0 {
			t.Fatalf("%s reads %d deliveries of a failed send", u, len(got))
		}
	}
	node.clock.Add(3 * time.Second) // the retries come later: the same entry all the same
	for range 2 {
		if _, err := node.svc.SendGroupMessage(as(users[0]), req); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range users[1:] {
		got := readInbox(t, node.svc, node.inboxes, inbox(u, 1))
		if len(got) != 1 || !bytes.Equal(got[0].GetPayload(), req.GetPrivateMessage()) {
			t.Fatalf("%s reads %d deliveries", u, len(got))
		}
	}
	if ids, _, err := node.inboxes.ReadIDs(context.Background(), messaging.GroupLogInboxForTest(gid), nil, 10); err != nil || len(ids) != 1 {
		t.Fatalf("the group's log holds %d entries, %v; want 1", len(ids), err)
	}
}
