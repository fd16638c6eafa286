package framing

import (
	"bytes"
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/secrettree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// fixture is one epoch of a two-leaf group as both members see it.
type fixture struct {
	s                *suite.Suite
	sigPriv, sigPub  []byte
	groupContext     []byte
	membershipKey    []byte
	encryptionSecret []byte
	senderDataSecret []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := suite.New(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	gc := wire.Encode(&wire.GroupContext{Version: wire.ProtocolVersion10, CipherSuite: uint16(s.ID()), GroupID: []byte("g"),
		Epoch: 3, TreeHash: bytes.Repeat([]byte{1}, 32), ConfirmedTranscriptHash: bytes.Repeat([]byte{2}, 32)})
	return &fixture{s: s, sigPriv: priv, sigPub: pub, groupContext: gc,
		membershipKey:    bytes.Repeat([]byte{3}, 32),
		encryptionSecret: bytes.Repeat([]byte{4}, 32),
		senderDataSecret: bytes.Repeat([]byte{5}, 32),
	}
}

func (f *fixture) secretTree() *secrettree.Tree {
	return secrettree.New(f.s, f.encryptionSecret, 2, secrettree.DefaultLimits)
}

func (f *fixture) content(ct wire.ContentType, sender wire.Sender) *wire.FramedContent {
	fc := &wire.FramedContent{GroupID: []byte("g"), Epoch: 3, Sender: sender, AuthenticatedData: []byte("ad"), ContentType: ct}
	switch ct {
	case wire.ContentApplication:
		fc.ApplicationData = []byte("hello")
	case wire.ContentProposal:
		fc.Proposal = &wire.Proposal{Type: wire.ProposalRemove, Removed: 1}
	}
	return fc
}

var member0 = wire.Sender{Type: wire.SenderMember, Index: 0}

func TestPublicRoundTripAndTampering(t *testing.T) {
	f := newFixture(t)
	ac, err := Sign(f.s, wire.WirePublicMessage, f.content(wire.ContentProposal, member0), f.sigPriv, f.groupContext)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := ProtectPublic(f.s, ac, f.membershipKey, f.groupContext)
	if err != nil {
		t.Fatal(err)
	}
	// The message goes through its encoding, as it would on the wire.
	m, err := wire.DecodeMLSMessage(wire.Encode(&wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wire.WirePublicMessage, PublicMessage: pm}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnprotectPublic(f.s, m.PublicMessage, f.membershipKey, f.groupContext)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(f.s, got, f.sigPub, f.groupContext); err != nil {
		t.Fatal(err)
	}
	if got.Content.Proposal.Removed != 1 || string(got.Content.AuthenticatedData) != "ad" {
		t.Errorf("content changed in transit: %+v", got.Content)
	}

	wrongKey := bytes.Repeat([]byte{9}, 32)
	if _, err := UnprotectPublic(f.s, pm, wrongKey, f.groupContext); !errors.Is(err, ErrBadMembershipTag) {
		t.Errorf("wrong membership key: %v, want ErrBadMembershipTag", err)
	}
	otherEpoch := bytes.Clone(f.groupContext)
	otherEpoch[len(otherEpoch)-1] ^= 1
	if _, err := UnprotectPublic(f.s, pm, f.membershipKey, otherEpoch); !errors.Is(err, ErrBadMembershipTag) {
		t.Errorf("other group context: %v, want ErrBadMembershipTag", err)
	}
	noTag := *pm
	noTag.MembershipTag = nil
	if _, err := UnprotectPublic(f.s, &noTag, f.membershipKey, f.groupContext); !errors.Is(err, ErrBadMembershipTag) {
		t.Errorf("missing membership tag: %v, want ErrBadMembershipTag", err)
	}
	got.Content.Proposal = &wire.Proposal{Type: wire.ProposalRemove, Removed: 0}
	if err := VerifySignature(f.s, got, f.sigPub, f.groupContext); !errors.Is(err, suite.ErrBadSignature) {
		t.Errorf("altered content: %v, want ErrBadSignature", err)
	}
}

func TestExternalSenderHasNoMembershipTag(t *testing.T) {
	f := newFixture(t)
	ac, err := Sign(f.s, wire.WirePublicMessage, f.content(wire.ContentProposal, wire.Sender{Type: wire.SenderExternal, Index: 0}), f.sigPriv, f.groupContext)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := ProtectPublic(f.s, ac, f.membershipKey, f.groupContext)
	if err != nil {
		t.Fatal(err)
	}
	if pm.MembershipTag != nil {
		t.Error("external sender's message carries a membership tag")
	}
	// A non-member cannot know the membership key: nothing to check.
	if _, err := UnprotectPublic(f.s, pm, bytes.Repeat([]byte{9}, 32), f.groupContext); err != nil {
		t.Errorf("external proposal: %v", err)
	}
}

func TestApplicationDataIsNeverPublic(t *testing.T) {
	f := newFixture(t)
	ac, err := Sign(f.s, wire.WirePublicMessage, f.content(wire.ContentApplication, member0), f.sigPriv, f.groupContext)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ProtectPublic(f.s, ac, f.membershipKey, f.groupContext); !errors.Is(err, ErrApplicationInPublic) {
		t.Errorf("protect: %v, want ErrApplicationInPublic", err)
	}
	pm := &wire.PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if _, err := UnprotectPublic(f.s, pm, f.membershipKey, f.groupContext); !errors.Is(err, ErrApplicationInPublic) {
		t.Errorf("unprotect: %v, want ErrApplicationInPublic", err)
	}
}

func TestPrivateRoundTripReplayAndTampering(t *testing.T) {
	f := newFixture(t)
	send, recv := f.secretTree(), f.secretTree()
	protect := func(padding int) *wire.PrivateMessage {
		t.Helper()
		ac, err := Sign(f.s, wire.WirePrivateMessage, f.content(wire.ContentApplication, member0), f.sigPriv, f.groupContext)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := ProtectPrivate(f.s, ac, send, f.senderDataSecret, padding)
		if err != nil {
			t.Fatal(err)
		}
		return pm
	}
	first, second := protect(0), protect(17)
	if bytes.Equal(first.EncryptedSenderData, second.EncryptedSenderData) {
		t.Error("two messages share encrypted sender data")
	}
	if len(second.Ciphertext) != len(first.Ciphertext)+17 {
		t.Errorf("padding: ciphertexts of %d and %d bytes", len(first.Ciphertext), len(second.Ciphertext))
	}
	// Out of order, then a replay.
	for _, pm := range []*wire.PrivateMessage{second, first} {
		ac, err := UnprotectPrivate(f.s, pm, recv, f.senderDataSecret, VerifyWith(f.s, f.sigPub, f.groupContext))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifySignature(f.s, ac, f.sigPub, f.groupContext); err != nil {
			t.Fatal(err)
		}
		if string(ac.Content.ApplicationData) != "hello" || ac.Content.Sender != member0 {
			t.Errorf("decrypted %q from %+v", ac.Content.ApplicationData, ac.Content.Sender)
		}
	}
	if _, err := UnprotectPrivate(f.s, first, recv, f.senderDataSecret, VerifyWith(f.s, f.sigPub, f.groupContext)); !errors.Is(err, secrettree.ErrGenerationUsed) {
		t.Errorf("replay: %v, want ErrGenerationUsed", err)
	}

	third := protect(0)
	cases := []struct {
		name string
		edit func(*wire.PrivateMessage)
	}{
		{"ciphertext", func(pm *wire.PrivateMessage) { pm.Ciphertext[0] ^= 1 }},
		{"sender data", func(pm *wire.PrivateMessage) { pm.EncryptedSenderData[0] ^= 1 }},
		{"authenticated data", func(pm *wire.PrivateMessage) { pm.AuthenticatedData = []byte("AD") }},
		{"epoch", func(pm *wire.PrivateMessage) { pm.Epoch++ }},
	}
	for _, c := range cases {
		pm := *third
		pm.Ciphertext = bytes.Clone(third.Ciphertext)
		pm.EncryptedSenderData = bytes.Clone(third.EncryptedSenderData)
		c.edit(&pm)
		if _, err := UnprotectPrivate(f.s, &pm, f.secretTree(), f.senderDataSecret, VerifyWith(f.s, f.sigPub, f.groupContext)); !errors.Is(err, suite.ErrDecrypt) {
			t.Errorf("tampered %s: %v, want ErrDecrypt", c.name, err)
		}
	}
	if _, err := UnprotectPrivate(f.s, third, f.secretTree(), bytes.Repeat([]byte{6}, 32), VerifyWith(f.s, f.sigPub, f.groupContext)); !errors.Is(err, suite.ErrDecrypt) {
		t.Errorf("wrong sender data secret: %v, want ErrDecrypt", err)
	}
}

func TestPrivateRequiresMemberSender(t *testing.T) {
	f := newFixture(t)
	ac, err := Sign(f.s, wire.WirePrivateMessage, f.content(wire.ContentProposal, wire.Sender{Type: wire.SenderExternal}), f.sigPriv, f.groupContext)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ProtectPrivate(f.s, ac, f.secretTree(), f.senderDataSecret, 0); !errors.Is(err, ErrNotMember) {
		t.Errorf("external sender: %v, want ErrNotMember", err)
	}
}
