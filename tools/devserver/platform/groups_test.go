package platform_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
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
			req.GroupId, req.Commit, req.GroupInfo = gid, mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), []byte("g")
			if len(req.WelcomeRecipients) > 0 {
				req.Welcome = mlsframe.Welcome(mlsframe.Ref(1))
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
	refs := make([][]byte, n)
	for i := range refs {
		refs[i] = mlsframe.Ref(i)
	}
	welcome := mlsframe.PaddedWelcome(1<<20, refs...)
	before := dirSize(t, e.dir)
	must(e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("g"),
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

// TestCommitFanOutIsBounded: a 256 KiB commit in a group of 300 devices used to store
// 75 MB of copies and was refused with LIMIT_EXCEEDED; the group log (issue 12) stores it
// once with a notice per device, so it is accepted and grows the data dir by far less
// than one copy per device, and every member still receives all of it.
func TestCommitFanOutIsBounded(t *testing.T) {
	e := unlimited(t)
	const n = 300
	members := make([]*device, n)
	for i := range members {
		members[i] = e.register(t, fmt.Sprintf("member%d", i))
	}
	gid := clientID()
	must(e.msg.CreateGroup(members[0].ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(members...), GroupInfo: []byte("gi")}))
	commit := mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 256<<10)
	before := dirSize(t, e.dir)
	if resp := must(e.msg.SubmitCommit(members[0].ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: commit, GroupInfo: []byte("g")})); resp.GetEpoch() != 1 {
		t.Fatalf("epoch after the commit = %d, want 1", resp.GetEpoch())
	}
	// The kv file grows by whole mmap steps, so allow a few MiB over the one copy.
	if grown := dirSize(t, e.dir) - before; grown > 12<<20 {
		t.Errorf("a 256 KiB commit for %d devices grew the data dir by %d bytes; it must be stored once", n, grown)
	}
	for _, m := range []*device{members[1], members[n-1]} {
		if d := e.receive(t, m).next(t); d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT || !bytes.Equal(d.GetPayload(), commit) {
			t.Fatalf("a member got a %v of %d bytes, want the %d-byte commit", d.GetKind(), len(d.GetPayload()), len(commit))
		}
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
	_, err := e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("g")})
	wantErr(t, err, codes.ResourceExhausted, "INBOX_FULL")
	// Adding a device whose inbox is full is refused the same way.
	gid2 := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid2, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	_, err = e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid2, Commit: mlsframe.PrivateMessage(gid2, 0, mlsframe.Commit, 0), GroupInfo: []byte("g"),
		Welcome: mlsframe.Welcome(mlsframe.Ref(1)), Added: addrs(full), WelcomeRecipients: addrs(full)})
	wantErr(t, err, codes.ResourceExhausted, "INBOX_FULL")
	if resp := must(e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 50), GroupInfo: []byte("g"), Removed: addrs(full)})); resp.GetEpoch() != 1 {
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
	req := &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("g1")}
	first := must(e.msg.SubmitCommit(alice.ctx(t), req))
	again, err := e.msg.SubmitCommit(alice.ctx(t), req)
	if err != nil {
		t.Fatalf("retry of the accepted commit: %v", err)
	}
	if again.GetEpoch() != 1 || !again.GetServerTime().AsTime().Equal(first.GetServerTime().AsTime()) {
		t.Fatalf("retry answered epoch %d at %v, first answer epoch %d at %v", again.GetEpoch(), again.GetServerTime().AsTime(), first.GetEpoch(), first.GetServerTime().AsTime())
	}
	_, err = e.msg.SubmitCommit(bob.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: req.GetCommit(), GroupInfo: []byte("g1")})
	wantErr(t, err, codes.Aborted, "EPOCH_CONFLICT")
	_, err = e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 77), GroupInfo: []byte("g1")})
	wantErr(t, err, codes.Aborted, "EPOCH_CONFLICT")
	r := e.receive(t, bob)
	if d := r.next(t); d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT || !bytes.Equal(d.GetPayload(), req.GetCommit()) {
		t.Fatalf("bob got a %v of %d bytes", d.GetKind(), len(d.GetPayload()))
	}
	<-r.backlog
	r.none(t, 300*time.Millisecond)
}

// TestHandshakesMustBePrivateMessagesOfTheirGroupAndEpoch (issue 18, "Also"): the service
// reads only what RFC 9420 leaves in the clear, and checks it against the request: a
// handshake must be a PrivateMessage (a PublicMessage would show it proposals and
// credentials) of the request's group and epoch with the right content type, and a
// Welcome must name one distinct KeyPackageRef per added device.
func TestHandshakesMustBePrivateMessagesOfTheirGroupAndEpoch(t *testing.T) {
	e := unlimited(t)
	alice, bob, carol := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	commit := func(c []byte) *messagingv1.SubmitCommitRequest {
		return &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: c, GroupInfo: []byte("g")}
	}
	adding := func(w []byte) *messagingv1.SubmitCommitRequest {
		r := commit(mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0))
		r.Welcome, r.Added, r.WelcomeRecipients = w, addrs(carol), addrs(carol)
		return r
	}
	for name, req := range map[string]*messagingv1.SubmitCommitRequest{
		"not MLS":                   commit([]byte("commit")),
		"PublicMessage":             commit(mlsframe.PublicCommit(gid, 0)),
		"another group":             commit(mlsframe.PrivateMessage(clientID(), 0, mlsframe.Commit, 0)),
		"another epoch":             commit(mlsframe.PrivateMessage(gid, 1, mlsframe.Commit, 0)),
		"a proposal":                commit(mlsframe.PrivateMessage(gid, 0, mlsframe.Proposal, 0)),
		"application data":          commit(mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 0)),
		"Welcome not MLS":           adding([]byte("welcome")),
		"Welcome is a commit":       adding(mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0)),
		"Welcome for two devices":   adding(mlsframe.Welcome(mlsframe.Ref(1), mlsframe.Ref(2))),
		"Welcome names a ref twice": {GroupId: gid, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("g"), Welcome: mlsframe.Welcome(mlsframe.Ref(1), mlsframe.Ref(1)), Added: addrs(carol, e.link(t, carol)), WelcomeRecipients: nil},
	} {
		t.Run(name, func(t *testing.T) {
			if req.WelcomeRecipients == nil && req.Welcome != nil {
				req.WelcomeRecipients = req.Added
			}
			_, err := e.msg.SubmitCommit(alice.ctx(t), req)
			wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
		})
	}
	for name, p := range map[string][]byte{
		"not MLS":       []byte("proposal"),
		"a commit":      mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0),
		"another epoch": mlsframe.PrivateMessage(gid, 3, mlsframe.Proposal, 0),
	} {
		t.Run("proposal "+name, func(t *testing.T) {
			_, err := e.msg.SubmitProposal(alice.ctx(t), &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: p})
			wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
		})
	}
	if info := must(e.msg.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid})); info.GetEpoch() != 0 || len(info.GetMembers()) != 2 {
		t.Fatalf("refused handshakes changed the group: epoch %d, %d members", info.GetEpoch(), len(info.GetMembers()))
	}
	// The PrivateMessage handshakes of the group's epoch go through.
	must(e.msg.SubmitProposal(alice.ctx(t), &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: mlsframe.PrivateMessage(gid, 0, mlsframe.Proposal, 0)}))
	if resp := must(e.msg.SubmitCommit(alice.ctx(t), adding(mlsframe.Welcome(mlsframe.Ref(1))))); resp.GetEpoch() != 1 {
		t.Fatalf("epoch after a well-formed commit = %d", resp.GetEpoch())
	}
}

// TestGroupMessagesMustBePrivateMessagesOfTheirGroupAndEpoch (issue 18): a group message is
// stored once in the group log and fanned out to every member, so it is checked like a
// handshake: an MLS PrivateMessage of the request's group and epoch carrying application
// data. Anything else is refused with MALFORMED_REQUEST and reaches no member.
func TestGroupMessagesMustBePrivateMessagesOfTheirGroupAndEpoch(t *testing.T) {
	e := unlimited(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	must(e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 0, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("g1")}))
	r := e.receive(t, bob)
	if d := r.next(t); d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT {
		t.Fatalf("bob got a %v, want the commit", d.GetKind())
	}
	for name, m := range map[string]*messagingv1.SendGroupMessageRequest{
		"not MLS":            {Epoch: 1, PrivateMessage: []byte("hello")},
		"PublicMessage":      {Epoch: 1, PrivateMessage: mlsframe.PublicCommit(gid, 1)},
		"a Welcome":          {Epoch: 1, PrivateMessage: mlsframe.Welcome(mlsframe.Ref(1))},
		"another group":      {Epoch: 1, PrivateMessage: mlsframe.PrivateMessage(clientID(), 1, mlsframe.Application, 0)},
		"another epoch":      {Epoch: 1, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 0)},
		"a commit":           {Epoch: 1, PrivateMessage: mlsframe.PrivateMessage(gid, 1, mlsframe.Commit, 0)},
		"a proposal":         {Epoch: 1, PrivateMessage: mlsframe.PrivateMessage(gid, 1, mlsframe.Proposal, 0)},
		"previous epoch lie": {Epoch: 0, PrivateMessage: mlsframe.PrivateMessage(gid, 1, mlsframe.Application, 0)},
	} {
		t.Run(name, func(t *testing.T) {
			m.GroupId, m.ClientMessageId = gid, clientID()
			_, err := e.msg.SendGroupMessage(alice.ctx(t), m)
			wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
		})
	}
	r.none(t, 300*time.Millisecond)
	// Application PrivateMessages of the current and of the previous epoch go through.
	for _, epoch := range []uint64{1, 0} {
		m := mlsframe.PrivateMessage(gid, epoch, mlsframe.Application, 40)
		must(e.msg.SendGroupMessage(alice.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, Epoch: epoch, PrivateMessage: m, ClientMessageId: clientID()}))
		if d := r.next(t); d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE || !bytes.Equal(d.GetPayload(), m) || d.GetEpoch() != epoch {
			t.Fatalf("bob got a %v of epoch %d, want the epoch-%d message", d.GetKind(), d.GetEpoch(), epoch)
		}
	}
}
