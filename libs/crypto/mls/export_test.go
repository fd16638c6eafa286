package mls

import (
	"errors"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/keysched"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// CheckWelcomeVector runs the welcome.json verification: decrypt the
// Welcome for the KeyPackage with initPriv, decrypt and verify the GroupInfo
// with signerPub, and check its confirmation tag.
func CheckWelcomeVector(cs uint16, kpMessage, initPriv, signerPub, welcome []byte) error {
	s, err := suite.New(suite.ID(cs))
	if err != nil {
		return err
	}
	km, err := wire.DecodeMLSMessage(kpMessage)
	if err != nil {
		return err
	}
	wm, err := wire.DecodeMLSMessage(welcome)
	if err != nil {
		return err
	}
	if km.KeyPackage == nil || wm.Welcome == nil {
		return errors.New("vector messages of the wrong type")
	}
	g := &Group{s: s, externalPSKs: map[string][]byte{}, resumption: map[uint64][]byte{}}
	gs, gi, pskSecret, err := g.openWelcome(wm.Welcome, km.KeyPackage, initPriv)
	if err != nil {
		return err
	}
	if err := s.VerifyWithLabel(signerPub, groupInfoLabel, gi.TBS(), gi.Signature); err != nil {
		return err
	}
	e := keysched.FromJoiner(s, gs.JoinerSecret, pskSecret, wire.Encode(&gi.GroupContext))
	return keysched.VerifyConfirmationTag(s, e.ConfirmationKey, gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag)
}

// PuppetCommit returns an empty commit with an UpdatePath made from g's
// state as if by the member at leaf, whose identity the caller holds.
// Benchmarks use it to fill a tree's parents the way a group's history of
// commits would, without keeping every member's state.
func PuppetCommit(g *Group, leaf uint32, id *Identity) ([]byte, error) {
	p := g.clone()
	p.me = treemath.LeafIndex(leaf)
	p.sigPriv = id.sigPriv
	p.privs = map[treemath.NodeIndex][]byte{}
	res, err := p.Commit(CommitOptions{UpdatePath: true})
	if err != nil {
		return nil, err
	}
	return res.Commit, nil
}

// ForgeApplication returns an application message that g's member, who
// holds the epoch's secret tree like every member, encrypts under the next
// key of the member at leaf but signs with its own key: it decrypts at every
// member, and only the signature check refuses it.
func ForgeApplication(g *Group, leaf uint32, data []byte) ([]byte, error) {
	p := g.clone()
	p.me = treemath.LeafIndex(leaf)
	return p.ProtectApplication(data, nil)
}

// Fork returns a copy of g's state that shares no secrets with it, for
// benchmarks and tests that process the same message more than once.
func Fork(g *Group) *Group { return g.clone() }
