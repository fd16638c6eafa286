package messaging_test

import (
	"bytes"
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
