package messaging_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// TestExternalSenderKeyIsPersisted (issue 19 item 2): CreateGroup publishes the delivery
// service's external sender, an Ed25519 key of the X-Wing suite; the key is made once and
// kept in the data dir, so a restarted service signs with the key its groups list.
func TestExternalSenderKeyIsPersisted(t *testing.T) {
	dir := t.TempDir()
	create := func(n *node, gid string) []byte {
		t.Helper()
		resp, err := n.svc.CreateGroup(asAlice(), &messagingv1.CreateGroupRequest{GroupId: []byte(gid), GroupInfo: []byte("gi"),
			Members: []*commonv1.DeviceAddress{addr(aliceID, 1)}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetExternalSender()
	}
	first := startNode(t, dir)
	a, b := create(first, "g1"), create(first, "g2")
	first.close()
	second := startNode(t, dir)
	c := create(second, "g3")
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Fatalf("the external sender changed: %x, %x, then after a restart %x", a, b, c)
	}
	es, err := mls.ParseExternalSender(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(es.SignatureKey) != 32 {
		t.Fatalf("external sender key of %d bytes, want an Ed25519 key", len(es.SignatureKey))
	}
}

// FuzzDeviceOfCredential: the service's reader of member credentials (from any leaf of a
// GroupInfo a client uploaded) never panics, and what it accepts names a non-empty
// account whose bytes are in the credential after the "GMC1" prefix and length.
func FuzzDeviceOfCredential(f *testing.F) {
	f.Add([]byte("GMC1\x05alice\x00\x00\x00\x02rest"))
	f.Add([]byte("GMC1\x05ali"))
	f.Add([]byte("GMC1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		user, device, ok := messaging.DeviceOfCredentialForTest(b)
		if !ok {
			return
		}
		if len(user) == 0 || len(b) < 5+len(user)+4 || string(b[5:5+len(user)]) != user || int(b[4]) != len(user) {
			t.Fatalf("accepted %x as %q/%d", b, user, device)
		}
	})
}

// testCredential is the start of a Guardyn client credential: what the service reads.
func testCredential(user string, device uint32) []byte {
	b := append([]byte("GMC1"), byte(len(user)))
	b = append(b, user...)
	return append(b, byte(device>>24), byte(device>>16), byte(device>>8), byte(device))
}

// TestServiceProposesRemovalOnlyWhereListed: the service proposes the removal of a
// deleted device only in groups whose external_senders lists its key (elsewhere the
// members would refuse the proposal), at the key's index, and the members accept it:
// it names the device's leaf and is signed by the published key.
func TestServiceProposesRemovalOnlyWhereListed(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, t.TempDir())
	anyCred := func(uint16, []byte, [][]byte, []byte) error { return nil }
	group := func(gid string, exts []mls.Extension) (*mls.Group, []byte) {
		t.Helper()
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
		g, err := mls.NewGroup(alice, []byte(gid), anyCred)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Commit(mls.CommitOptions{Add: [][]byte{kp.Bytes()}, GroupContextExtensions: exts}); err != nil {
			t.Fatal(err)
		}
		if err := g.MergePendingCommit(); err != nil {
			t.Fatal(err)
		}
		gi, err := g.GroupInfo(true)
		if err != nil {
			t.Fatal(err)
		}
		return g, gi
	}
	register := func(gid string, gi []byte) []byte {
		t.Helper()
		resp, err := n.svc.CreateGroup(asAlice(), &messagingv1.CreateGroupRequest{GroupId: []byte(gid), GroupInfo: gi,
			Members: []*commonv1.DeviceAddress{addr(aliceID, 1), addr(bobID, 1)}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetExternalSender()
	}
	_, unlisted := group("unlisted", nil)
	dsBytes := register("unlisted", unlisted)
	ds, err := mls.ParseExternalSender(dsBytes)
	if err != nil {
		t.Fatal(err)
	}
	other, err := mls.NewIdentity(mls.DefaultCipherSuite, []byte("other"))
	if err != nil {
		t.Fatal(err)
	}
	// The service is the second external sender: its proposals must carry index 1.
	listed, gi := group("listed", []mls.Extension{mls.ExternalSendersExtension([]mls.ExternalSender{other.ExternalSender(), ds})})
	listed.SetTrustedExternalSenders([][]byte{ds.SignatureKey})
	register("listed", gi)

	if err := n.svc.ProposeRemovalsForTest(ctx, bobID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	ds2 := readInbox(t, n.svc, n.inboxes, inbox(aliceID, 1))
	if len(ds2) != 1 || string(ds2[0].GetGroupId()) != "listed" || ds2[0].GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_PROPOSAL {
		t.Fatalf("alice got %d deliveries (%v), want one proposal for the listed group", len(ds2), ds2)
	}
	r, err := listed.Process(ds2[0].GetPayload())
	if err != nil || !r.Proposal {
		t.Fatalf("alice's group refused the service's proposal: %+v %v", r, err)
	}
	before := len(listed.Members())
	if _, err := listed.Commit(mls.CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := listed.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	if got := len(listed.Members()); got != before-1 {
		t.Fatalf("the commit including the proposal left %d of %d members", got, before)
	}
	for _, m := range listed.Members() {
		if bytes.Equal(m, testCredential(bobID, 1)) {
			t.Fatal("bob's device is still a member")
		}
	}
}
