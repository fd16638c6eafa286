package platform_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/ratelimit"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// The delivery-service abuse tests (issue 18, finding 3): one member must not be able to
// make the server store a Welcome or commit many times over, nor deliver it to devices
// the commit does not add, nor push handshakes past full inboxes.

// dirSize is the bytes under dir: the kv file, the message store and NATS.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWelcomeRecipientsMustBeTheAddedDevices: a Welcome goes to exactly the devices the
// commit adds; a member cannot aim it at bystanders or at devices already in the group.
func TestWelcomeRecipientsMustBeTheAddedDevices(t *testing.T) {
	e := unlimited(t)
	alice, bob, carol, dave := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol"), e.register(t, "dave")
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	for name, req := range map[string]*messagingv1.SubmitCommitRequest{
		"bystander welcomed":           {Added: addrs(carol), WelcomeRecipients: addrs(carol, dave)},
		"added device not welcomed":    {Added: addrs(carol, dave), WelcomeRecipients: addrs(carol)},
		"welcome to a member":          {Added: addrs(carol), WelcomeRecipients: addrs(bob)},
		"member added again":           {Added: addrs(bob), WelcomeRecipients: addrs(bob)},
		"added device with no Welcome": {Added: addrs(carol)},
	} {
		t.Run(name, func(t *testing.T) {
			req.GroupId, req.Commit, req.GroupInfo = gid, []byte("c"), []byte("g")
			if len(req.WelcomeRecipients) > 0 {
				req.Welcome = []byte("w")
			}
			_, err := e.msg.SubmitCommit(alice.ctx(t), req)
			wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
		})
	}
	if info := must(e.msg.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid})); info.GetEpoch() != 0 || len(info.GetMembers()) != 2 {
		t.Fatalf("refused commits changed the group: %v", info)
	}
	daveStream := e.receive(t, dave)
	<-daveStream.backlog
	daveStream.none(t, 200*time.Millisecond)
}

// TestWelcomeIsStoredOnce: a commit adding 40 devices with a Welcome at its 1 MiB maximum
// stores the Welcome once (each device gets a notice and fetches it), where it used to be
// copied 40 times into the kv store and 40 times into the inboxes (over 90 MB).
func TestWelcomeIsStoredOnce(t *testing.T) {
	e := unlimited(t)
	alice := e.register(t, "alice")
	const n = 40
	joiners := make([]*device, n)
	for i := range joiners {
		joiners[i] = e.register(t, fmt.Sprintf("joiner%d", i))
	}
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice), GroupInfo: []byte("gi")}))
	welcome := bytes.Repeat([]byte("W"), 1<<20)
	before := dirSize(t, e.dir)
	must(e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g"),
		Welcome: welcome, Added: addrs(joiners...), WelcomeRecipients: addrs(joiners...)}))
	grown := dirSize(t, e.dir) - before
	// The kv file grows by whole mmap steps, so allow a few MiB over the one copy.
	if grown > 12<<20 {
		t.Errorf("a 1 MiB Welcome for %d devices grew the data dir by %d bytes; it must be stored once", n, grown)
	}
	for _, j := range []*device{joiners[0], joiners[n-1]} {
		r := e.receive(t, j)
		d := r.next(t)
		if d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME || len(d.GetPayload()) != 0 || d.GetEpoch() != 1 || !bytes.Equal(d.GetGroupId(), gid) {
			t.Fatalf("joiner got a %v of %d bytes for epoch %d, want an empty WELCOME notice for epoch 1", d.GetKind(), len(d.GetPayload()), d.GetEpoch())
		}
		w := must(e.msg.FetchWelcome(j.ctx(t), &messagingv1.FetchWelcomeRequest{GroupId: gid}))
		if !bytes.Equal(w.GetWelcome(), welcome) || w.GetEpoch() != 1 {
			t.Fatalf("fetched a Welcome of %d bytes for epoch %d", len(w.GetWelcome()), w.GetEpoch())
		}
	}
}

// TestCommitFanOutIsBounded: a 256 KiB commit in a group of 300 devices would store 75 MB
// of copies; the service refuses it with LIMIT_EXCEEDED and the epoch stays.
func TestCommitFanOutIsBounded(t *testing.T) {
	e := unlimited(t)
	const n = 300
	members := make([]*device, n)
	for i := range members {
		members[i] = e.register(t, fmt.Sprintf("member%d", i))
	}
	gid := clientID()
	must(e.msg.CreateGroup(members[0].ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(members...), GroupInfo: []byte("gi")}))
	_, err := e.msg.SubmitCommit(members[0].ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: make([]byte, 256<<10), GroupInfo: []byte("g")})
	wantErr(t, err, codes.InvalidArgument, "LIMIT_EXCEEDED")
	// A commit of a realistic size for the group goes through.
	if resp := must(e.msg.SubmitCommit(members[0].ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: make([]byte, 16<<10), GroupInfo: []byte("g")})); resp.GetEpoch() != 1 {
		t.Fatalf("epoch after the commit = %d, want 1 (the refused one must not count)", resp.GetEpoch())
	}
}

// TestCommitsRespectInboxCaps: a commit is refused while a remaining member's inbox is
// full (it used to be stored past the cap), but a commit removing that device goes
// through.
func TestCommitsRespectInboxCaps(t *testing.T) {
	e := startWith(t, func(c *platform.Config) { c.Limits = ratelimit.Policy{}; c.InboxLimit = 3 })
	alice, bob, full := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "full")
	for range 3 {
		must(e.send(t, alice, full, []byte("fill")))
	}
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob, full), GroupInfo: []byte("gi")}))
	_, err := e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c0"), GroupInfo: []byte("g")})
	wantErr(t, err, codes.ResourceExhausted, "INBOX_FULL")
	// Adding a device whose inbox is full is refused the same way.
	gid2 := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid2, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	_, err = e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid2, Commit: []byte("c0"), GroupInfo: []byte("g"),
		Welcome: []byte("w"), Added: addrs(full), WelcomeRecipients: addrs(full)})
	wantErr(t, err, codes.ResourceExhausted, "INBOX_FULL")
	if resp := must(e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("remove full"), GroupInfo: []byte("g"), Removed: addrs(full)})); resp.GetEpoch() != 1 {
		t.Fatalf("epoch after removing the full device = %d", resp.GetEpoch())
	}
}

// TestRetriedCommitSucceeds: the committer's retry of its accepted commit (its response
// was lost) succeeds with the same epoch instead of EPOCH_CONFLICT, and stores nothing
// twice; another device's commit for the old epoch still conflicts.
func TestRetriedCommitSucceeds(t *testing.T) {
	e := unlimited(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	req := &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("commit 0"), GroupInfo: []byte("g1")}
	first := must(e.msg.SubmitCommit(alice.ctx(t), req))
	again, err := e.msg.SubmitCommit(alice.ctx(t), req)
	if err != nil {
		t.Fatalf("retry of the accepted commit: %v", err)
	}
	if again.GetEpoch() != 1 || !again.GetServerTime().AsTime().Equal(first.GetServerTime().AsTime()) {
		t.Fatalf("retry answered epoch %d at %v, first answer epoch %d at %v", again.GetEpoch(), again.GetServerTime().AsTime(), first.GetEpoch(), first.GetServerTime().AsTime())
	}
	_, err = e.msg.SubmitCommit(bob.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("commit 0"), GroupInfo: []byte("g1")})
	wantErr(t, err, codes.Aborted, "EPOCH_CONFLICT")
	_, err = e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("another commit 0"), GroupInfo: []byte("g1")})
	wantErr(t, err, codes.Aborted, "EPOCH_CONFLICT")
	r := e.receive(t, bob)
	if d := r.next(t); d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT || string(d.GetPayload()) != "commit 0" {
		t.Fatalf("bob got %v", d)
	}
	<-r.backlog
	r.none(t, 300*time.Millisecond)
}
