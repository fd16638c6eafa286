package mls

import (
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
)

// TestCloneSharesNoSecrets has a copy of a member's state decrypt first,
// through a parent node never derived, a fresh ratchet and a skipped key:
// each of these erases secrets in place, and the original must still
// decrypt every message afterwards.
func TestCloneSharesNoSecrets(t *testing.T) {
	s, err := suite.New(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]*Identity, 4)
	for i := range ids {
		if ids[i], err = NewIdentity(CipherSuite(s.ID()), []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := NewGroup(ids[0], []byte("clone"), trustAll)
	if err != nil {
		t.Fatal(err)
	}
	var kps []*KeyPackage
	var adds [][]byte
	for _, id := range ids[1:] {
		kp, err := id.NewKeyPackage(0, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		kps, adds = append(kps, kp), append(adds, kp.Bytes())
	}
	res, err := a.Commit(CommitOptions{Add: adds, InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	members := []*Group{a}
	for _, kp := range kps {
		g, err := Join(kp, res.Welcome, trustAll, nil)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, g)
	}
	b, d := members[1], members[3]

	// a sends two messages; b reads the second first, so the first's key
	// is a skipped key in b's state. d sends one, from the other half of
	// the tree, whose parent secret b has not derived yet.
	first, _ := a.ProtectApplication([]byte("first"), nil)
	second, _ := a.ProtectApplication([]byte("second"), nil)
	fromD, _ := d.ProtectApplication([]byte("from d"), nil)
	if _, err := b.Process(second); err != nil {
		t.Fatal(err)
	}
	c := b.clone()
	for _, msg := range [][]byte{first, fromD} {
		if _, err := c.Process(msg); err != nil {
			t.Fatalf("clone: %v", err)
		}
	}
	for i, msg := range [][]byte{first, fromD} {
		if _, err := b.Process(msg); err != nil {
			t.Fatalf("original after the clone decrypted message %d: %v", i, err)
		}
	}
}
