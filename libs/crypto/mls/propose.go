package mls

import (
	"fmt"
	"maps"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/framing"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// ProposeAdd returns a proposal message to add the member of a KeyPackage
// (MLSMessage bytes), for another member to commit.
func (g *Group) ProposeAdd(keyPackage []byte) ([]byte, error) {
	kp, err := parseKeyPackage(g.s, keyPackage)
	if err != nil {
		return nil, err
	}
	return g.propose(&wire.Proposal{Type: wire.ProposalAdd, KeyPackage: kp})
}

// ProposeRemove returns a proposal message to remove the member at leaf.
func (g *Group) ProposeRemove(leaf uint32) ([]byte, error) {
	if g.tree.Leaf(treemath.LeafIndex(leaf)) == nil {
		return nil, fmt.Errorf("%w: leaf %d", ErrUnknownSender, leaf)
	}
	return g.propose(&wire.Proposal{Type: wire.ProposalRemove, Removed: leaf})
}

// ProposeUpdate returns a proposal message replacing this member's leaf
// encryption key; the new private key is installed when a commit includes
// the proposal.
func (g *Group) ProposeUpdate() ([]byte, error) {
	priv, pub, err := freshHPKEKey(g.s)
	if err != nil {
		return nil, err
	}
	leaf := *g.tree.Leaf(g.me)
	leaf.EncryptionKey = pub
	leaf.Source = wire.SourceUpdate
	leaf.ParentHash = nil
	if err := tree.SignLeaf(g.s, &leaf, g.sigPriv, g.gc.GroupID, uint32(g.me)); err != nil {
		return nil, err
	}
	if g.updateKeys == nil {
		g.updateKeys = map[string][]byte{}
	}
	g.updateKeys[string(pub)] = priv
	return g.propose(&wire.Proposal{Type: wire.ProposalUpdate, LeafNode: &leaf})
}

// propose frames, signs and protects a proposal, and stores it so that this
// member's own next commit includes it.
func (g *Group) propose(p *wire.Proposal) ([]byte, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	wf := wire.WirePublicMessage
	if g.PrivateHandshake {
		wf = wire.WirePrivateMessage
	}
	fc := &wire.FramedContent{
		GroupID: g.gc.GroupID, Epoch: g.gc.Epoch, Sender: wire.Sender{Type: wire.SenderMember, Index: uint32(g.me)},
		ContentType: wire.ContentProposal, Proposal: p,
	}
	ac, err := framing.Sign(g.s, wf, fc, g.sigPriv, g.gcBytes)
	if err != nil {
		return nil, err
	}
	msg := &wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wf}
	if wf == wire.WirePublicMessage {
		msg.PublicMessage, err = framing.ProtectPublic(g.s, ac, g.epoch.MembershipKey, g.gcBytes)
	} else {
		msg.PrivateMessage, err = framing.ProtectPrivate(g.s, ac, g.secrets, g.epoch.SenderDataSecret, 0)
	}
	if err != nil {
		return nil, err
	}
	if err := g.storeProposal(ac); err != nil {
		return nil, err
	}
	return wire.Encode(msg), nil
}

// stagedPrivs returns a copy of this member's private keys fitted to the
// staged tree of next: keys of nodes that changed are dropped, and the key
// of an own Update proposal that the commit applied is installed.
func (g *Group) stagedPrivs(next *Group) map[treemath.NodeIndex][]byte {
	privs := maps.Clone(g.privs)
	if leaf := next.tree.Leaf(g.me); leaf != nil {
		if priv, ok := g.updateKeys[string(leaf.EncryptionKey)]; ok {
			privs[g.me.Node()] = priv
		}
	}
	next.tree.PrunePrivateKeys(privs)
	return privs
}
