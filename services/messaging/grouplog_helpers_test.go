package messaging_test

import (
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
	"github.com/guardyn/guardyn/libs/kv"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/msgstore"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// countingKV is the real kv store counting the key and value bytes its transactions put
// (a transaction the backend reruns counts twice: an upper bound), and its Update calls.
type countingKV struct {
	kv.Store
	written atomic.Int64
	updates atomic.Int64
	fail    atomic.Bool // every Update fails, as a full disk would make it
}

func (c *countingKV) Update(ctx context.Context, fn func(kv.Tx) error) error {
	c.updates.Add(1)
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
// the fixed fields of each message (inbox names, id, kind, two times), and its calls.
type countingInboxes struct {
	msgstore.Store
	written atomic.Int64
	appends atomic.Int64
	fail    atomic.Bool // every Append fails, as a full disk would make it
}

func (c *countingInboxes) Append(ctx context.Context, msgs []msgstore.Message) error {
	c.appends.Add(1)
	if c.fail.Load() {
		return errors.New("injected: message store unavailable")
	}
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

// inboxOpener opens the message store a groupNode runs on, in dir, with the test's
// clock; its cleanup is the caller's.
type inboxOpener func(t testing.TB, dir string, now func() time.Time) msgstore.Store

// embeddedInboxes is the default message store, embedded in dir.
func embeddedInboxes(t testing.TB, dir string, now func() time.Time) msgstore.Store {
	t.Helper()
	store, err := msgembedded.Open(filepath.Join(dir, msgembedded.DirName), msgembedded.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func startGroupNode(t testing.TB, users []string) *groupNode {
	t.Helper()
	return startGroupNodeOn(t, embeddedInboxes, users)
}

// startGroupNodeOn is startGroupNode with the message store open gives.
func startGroupNodeOn(t testing.TB, open inboxOpener, users []string) *groupNode {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	groups, err := kvembedded.Open(filepath.Join(dir, kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{now: time.Now()}
	store := open(t, dir, clock.Now)
	b, err := bus.StartEmbedded(context.Background(), filepath.Join(dir, "nats"), bus.EmbeddedOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	directory := staticDirectory{}
	for _, u := range users {
		directory[u] = []uint32{1}
	}
	n := &groupNode{kv: &countingKV{Store: groups}, inboxes: &countingInboxes{Store: store}, clock: clock}
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
	return memberGroupOn(t, embeddedInboxes, n, gid)
}

// memberGroupOn is memberGroup on the message store open gives.
func memberGroupOn(t testing.TB, open inboxOpener, n int, gid []byte) (*groupNode, []string) {
	t.Helper()
	users := make([]string, n)
	addrs := make([]*commonv1.DeviceAddress, n)
	for i := range users {
		users[i] = fmt.Sprintf("%032x", i+1)
		addrs[i] = addr(users[i], 1)
	}
	node := startGroupNodeOn(t, open, users)
	if _, err := node.svc.CreateGroup(as(users[0]), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs, GroupInfo: []byte("gi")}); err != nil {
		t.Fatal(err)
	}
	return node, users
}
