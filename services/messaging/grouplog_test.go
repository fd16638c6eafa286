package messaging_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/kv"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/msgstore"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// countingKV is the real kv store counting the key and value bytes its transactions put
// (a transaction the backend reruns counts twice: an upper bound).
type countingKV struct {
	kv.Store
	written atomic.Int64
	fail    atomic.Bool // every Update fails, as a full disk would make it
}

func (c *countingKV) Update(ctx context.Context, fn func(kv.Tx) error) error {
	if c.fail.Load() {
		return errors.New("injected: kv store unavailable")
	}
	return c.Store.Update(ctx, func(tx kv.Tx) error { return fn(countingTx{tx, &c.written}) })
}

type countingTx struct {
	kv.Tx
	written *atomic.Int64
}

func (t countingTx) Put(key, value []byte) error {
	t.written.Add(int64(len(key) + len(value)))
	return t.Tx.Put(key, value)
}

// countingInboxes is the real message store counting what Append is given: bodies and
// the fixed fields of each message (inbox names, id, kind, two times).
type countingInboxes struct {
	msgstore.Store
	written atomic.Int64
}

func (c *countingInboxes) Append(ctx context.Context, msgs []msgstore.Message) error {
	for _, m := range msgs {
		c.written.Add(int64(len(m.Body) + len(m.Inbox.UserID) + len(m.Inbox.DeviceID) + len(m.ID) + 1 + 16))
	}
	return c.Store.Append(ctx, msgs)
}

// groupNode is a messaging Server over counting real stores in dir, a device directory
// of the given users with one device each, and a clock the test moves.
type groupNode struct {
	svc     *messaging.Server
	kv      *countingKV
	inboxes *countingInboxes
	clock   *testClock
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func startGroupNode(t testing.TB, users []string) *groupNode {
	t.Helper()
	dir := t.TempDir()
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
	directory := staticDirectory{}
	for _, u := range users {
		directory[u] = []uint32{1}
	}
	n := &groupNode{kv: &countingKV{Store: groups}, inboxes: &countingInboxes{Store: store}, clock: &testClock{now: time.Now()}}
	n.svc, err = messaging.New(messaging.Config{Inboxes: n.inboxes, Groups: n.kv, Directory: directory, Conn: b.Conn(), Logger: quiet, Now: n.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.svc.Close()
		b.Close()
		store.Close()
		groups.Close()
	})
	return n
}

func as(user string) context.Context {
	return authn.NewContext(context.Background(), authn.Principal{UserID: user, DeviceID: 1})
}

// memberGroup creates a group of n one-device users and returns their ids, the creator
// first.
func memberGroup(t testing.TB, n int, gid []byte) (*groupNode, []string) {
	t.Helper()
	users := make([]string, n)
	addrs := make([]*commonv1.DeviceAddress, n)
	for i := range users {
		users[i] = fmt.Sprintf("%032x", i+1)
		addrs[i] = addr(users[i], 1)
	}
	node := startGroupNode(t, users)
	if _, err := node.svc.CreateGroup(as(users[0]), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs, GroupInfo: []byte("gi")}); err != nil {
		t.Fatal(err)
	}
	return node, users
}

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
	req := &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: []byte("sealed"), ClientMessageId: bytes.Repeat([]byte{3}, 16)}
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
		if len(got) != 1 || string(got[0].GetPayload()) != "sealed" {
			t.Fatalf("%s reads %d deliveries", u, len(got))
		}
	}
}
