package platform_test

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// Regression, found by the abuse tests: a commit, group message or Welcome at its
// documented maximum is stored as an encoded Delivery that exceeds msgstore.MaxBodySize
// (256 KiB); SubmitCommit has already advanced the epoch when the append fails.
func TestGroupPayloadsAtTheirMaximum(t *testing.T) {
	e := unlimited(t)
	alice, bob, carol := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	t.Run("SendGroupMessage 256 KiB", func(t *testing.T) {
		_, err := e.msg.SendGroupMessage(alice.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 256<<10), ClientMessageId: clientID()})
		if err != nil {
			t.Fatalf("private_message at its 256 KiB maximum: %v", err)
		}
	})
	t.Run("SubmitCommit 256 KiB", func(t *testing.T) {
		_, err := e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 0, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 256<<10), GroupInfo: []byte("g1")})
		info := must(e.msg.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid}))
		if err != nil {
			t.Fatalf("commit at its 256 KiB maximum: %v; the group is now at epoch %d", err, info.GetEpoch())
		}
	})
	t.Run("SubmitCommit Welcome 1 MiB", func(t *testing.T) {
		epoch := must(e.msg.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid})).GetEpoch()
		_, err := e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: epoch, Commit: mlsframe.PrivateMessage(gid, epoch, mlsframe.Commit, 0), GroupInfo: []byte("g"),
			Welcome: mlsframe.PaddedWelcome(1<<20, mlsframe.Ref(1)), WelcomeRecipients: addrs(carol), Added: addrs(carol)})
		after := must(e.msg.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid})).GetEpoch()
		if err != nil {
			t.Fatalf("Welcome at its 1 MiB maximum: %v; epoch went from %d to %d", err, epoch, after)
		}
	})
}

// Regression, found by the abuse tests: GetKeyBundles accepts the same device id
// repeatedly and claims one one-time prekey per repetition, so one rate-limited call
// drains 16.
func TestDuplicateDeviceIDsCannotDrainPreKeys(t *testing.T) {
	e := start(t)
	alice, mallory := e.register(t, "alice"), e.register(t, "mallory")
	must(e.auth.UploadPreKeys(alice.ctx(t), preKeyUpload(t, alice, keys.NewPreKeyStore(), true, 50)))
	resp, err := e.auth.GetKeyBundles(mallory.ctx(t), &authv1.GetKeyBundlesRequest{UserId: alice.UserID, DeviceIds: times[uint32](16, alice.ID)})
	if err == nil {
		left := must(e.auth.GetPreKeyCounts(alice.ctx(t), &authv1.GetPreKeyCountsRequest{})).GetCounts().GetOneTimeEcPrekeys()
		t.Fatalf("one call with device 1 named 16 times returned %d bundles and left %d of 50 one-time prekeys; want MALFORMED_REQUEST", len(resp.GetBundles()), left)
	}
	wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
}

// Regression, found by the abuse tests: the per-target bundle limit is keyed by target and
// caller, so every extra account an attacker registers gets a fresh per-target budget.
func TestOneTimePreKeysAreRateLimitedPerTarget(t *testing.T) {
	e := startWith(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["register"] = ratelimit.Config{Rate: 1, Burst: 100, MaxKeys: 100}
	})
	alice := e.register(t, "alice")
	must(e.auth.UploadPreKeys(alice.ctx(t), preKeyUpload(t, alice, keys.NewPreKeyStore(), true, 100)))
	burst := platform.DefaultPolicy()["bundles-target"].Burst
	claimed := 0
	for _, name := range []string{"sybil1", "sybil2", "sybil3"} {
		s := e.register(t, name)
		for range burst {
			if resp, err := e.auth.GetKeyBundles(s.ctx(t), &authv1.GetKeyBundlesRequest{UserId: alice.UserID}); err == nil && resp.GetBundles()[0].GetOneTimeEcPrekey() != nil {
				claimed++
			}
		}
	}
	if claimed > burst {
		t.Fatalf("three fresh accounts claimed %d of alice's one-time prekeys at once; the per-target burst is %d", claimed, burst)
	}
}

// Regression, found by the abuse tests: a signed EC prekey may reuse the id of a one-time
// EC prekey (and a last-resort ML-KEM prekey that of a one-time ML-KEM prekey), though ids
// are documented unique per device among prekeys of a kind.
func TestSignedPreKeyIDCannotCollideWithOneTimeID(t *testing.T) {
	e := start(t)
	alice := e.register(t, "alice")
	store := keys.NewPreKeyStore()
	req := preKeyUpload(t, alice, store, true, 1)
	req.OneTimeEcPrekeys[0].Id = req.GetSignedEcPrekey().GetId()
	_, err := e.auth.UploadPreKeys(alice.ctx(t), req)
	wantErr(t, err, codes.InvalidArgument, "DUPLICATE_PREKEY_ID")
}

// Regression, found by the abuse tests: group message ids derive from client_message_id
// without the group, so the same id in two groups (or in a SendMessage to the same device)
// silently stores only one.
func TestGroupMessageIDsAreScopedToTheGroup(t *testing.T) {
	e := unlimited(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	g1, g2 := clientID(), clientID()
	for _, g := range [][]byte{g1, g2} {
		must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: g, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	}
	id := clientID()
	must(e.msg.SendGroupMessage(alice.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: g1, PrivateMessage: mlsframe.PrivateMessage(g1, 0, mlsframe.Application, 0), ClientMessageId: id}))
	must(e.msg.SendGroupMessage(alice.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: g2, PrivateMessage: mlsframe.PrivateMessage(g2, 0, mlsframe.Application, 0), ClientMessageId: id}))
	r := e.receive(t, bob)
	first := r.next(t)
	if !bytes.Equal(first.GetGroupId(), g1) {
		t.Fatalf("first delivery %v", first)
	}
	second := r.next(t)
	if !bytes.Equal(second.GetGroupId(), g2) {
		t.Fatalf("second delivery %v", second)
	}
}

// Regression, found by the abuse tests: proposals (and commits) skip the inbox cap, and
// group members are never checked against the directory: anyone can create a group with a
// victim's device and flood its inbox past the cap.
func TestProposalsRespectTheInboxCap(t *testing.T) {
	e := startWith(t, func(c *platform.Config) { c.Limits = ratelimit.Policy{}; c.InboxLimit = 3 })
	alice, mallory := e.register(t, "alice"), e.register(t, "mallory")
	gid := clientID()
	must(e.msg.CreateGroup(mallory.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(mallory, alice), GroupInfo: []byte("gi")}))
	for i := range 10 {
		if _, err := e.msg.SubmitProposal(mallory.ctx(t), &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: mlsframe.PrivateMessage(gid, 0, mlsframe.Proposal, 100+i)}); err != nil {
			wantErr(t, err, codes.ResourceExhausted, "INBOX_FULL")
			return
		}
	}
	t.Fatal("10 proposals went into alice's inbox, whose cap is 3")
}

func TestGroupMembersMustExist(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	ghost := &messagingv1.CreateGroupRequest{GroupId: clientID(), GroupInfo: []byte("gi"),
		Members: append(addrs(alice, bob), &commonv1.DeviceAddress{UserId: bob.UserID, DeviceId: 7})}
	_, err := e.msg.CreateGroup(alice.ctx(t), ghost)
	wantErr(t, err, codes.NotFound, "DEVICE_NOT_FOUND")
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	_, err = e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g"), Welcome: []byte("w"),
		Added: []*commonv1.DeviceAddress{{UserId: bob.UserID, DeviceId: 9}}, WelcomeRecipients: []*commonv1.DeviceAddress{{UserId: bob.UserID, DeviceId: 9}}})
	wantErr(t, err, codes.NotFound, "DEVICE_NOT_FOUND")
	if info := must(e.msg.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid})); info.GetEpoch() != 0 {
		t.Fatalf("a refused commit moved the epoch to %d", info.GetEpoch())
	}
}
