package mls

import (
	"fmt"
	"maps"
	"slices"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/framing"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/keysched"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// GroupInfo returns a signed GroupInfo (MLSMessage bytes) for the current
// epoch with the external_pub extension, so that new members can join by
// external commit, and the ratchet tree when inlineTree is set.
func (g *Group) GroupInfo(inlineTree bool) ([]byte, error) {
	_, pub, err := keysched.ExternalPub(g.s, g.epoch.ExternalSecret)
	if err != nil {
		return nil, err
	}
	w := tlscodec.NewWriter(nil)
	w.Opaque(pub)
	gi := &wire.GroupInfo{
		GroupContext: g.gc, ConfirmationTag: g.confTag, Signer: uint32(g.me),
		Extensions: []wire.Extension{{Type: wire.ExtExternalPub, Data: w.Bytes()}},
	}
	if inlineTree {
		gi.Extensions = append(gi.Extensions, wire.Extension{Type: wire.ExtRatchetTree, Data: wire.Encode(g.tree.ToWire())})
	}
	if gi.Signature, err = g.s.SignWithLabel(g.sigPriv, groupInfoLabel, gi.TBS()); err != nil {
		return nil, fmt.Errorf("sign group info: %w", err)
	}
	return wire.Encode(&wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wire.WireGroupInfo, GroupInfo: gi}), nil
}

// ExternalJoinOptions carries what an external joiner may add to its
// commit (RFC 9420, Section 12.4.3.2).
type ExternalJoinOptions struct {
	// ExternalPSKs maps ids of external PSKs to inject (by PreSharedKey
	// proposals in the commit) to their secrets; the members must hold
	// them too.
	ExternalPSKs map[string][]byte
	// Resync removes the joiner's own prior leaf, the one with its
	// signature key and credential, in the same commit: a member that lost
	// its state rejoins. It fails with ErrUnknownSender when the tree has
	// no such leaf.
	Resync bool
	// TrustedExternalSenders is the new group's SetTrustedExternalSenders;
	// a group whose external_senders names another key is refused.
	TrustedExternalSenders [][]byte
}

// JoinExternal joins a group by external commit (RFC 9420, Section
// 12.4.3.2) from a GroupInfo carrying external_pub. ratchetTree is needed
// when the GroupInfo has no ratchet_tree extension; opts (may be nil) adds
// PSKs and the removal of the joiner's prior leaf. It returns the group in
// the new epoch and the commit to send to the Delivery Service; if the
// Delivery Service refuses it, discard the returned group. validate checks
// every member's credential in the tree joined, and later new members'; it
// must not be nil.
func JoinExternal(id *Identity, groupInfo, ratchetTree []byte, validate CredentialValidator, opts *ExternalJoinOptions) (*Group, []byte, error) {
	if validate == nil {
		return nil, nil, ErrNoCredentialValidator
	}
	if opts == nil {
		opts = &ExternalJoinOptions{}
	}
	m, err := wire.DecodeMLSMessage(groupInfo)
	if err != nil {
		return nil, nil, err
	}
	if m.GroupInfo == nil {
		return nil, nil, fmt.Errorf("%w: wire format %d, want group info", ErrUnexpectedMessage, m.WireFormat)
	}
	gi := m.GroupInfo
	s := id.suite
	if gi.GroupContext.CipherSuite != uint16(s.ID()) || gi.GroupContext.Version != wire.ProtocolVersion10 {
		return nil, nil, fmt.Errorf("%w: group suite %d", ErrNoMatchingKeyPackage, gi.GroupContext.CipherSuite)
	}
	extPubData, ok := wire.FindExtension(gi.Extensions, wire.ExtExternalPub)
	if !ok {
		return nil, nil, fmt.Errorf("%w: group info without external_pub", ErrUnexpectedMessage)
	}
	r := tlscodec.NewReader(extPubData)
	extPub := r.Opaque()
	if err := r.Finish(); err != nil {
		return nil, nil, fmt.Errorf("%w: external_pub: %w", wire.ErrMalformed, err)
	}
	// prev is the group as the GroupInfo describes it; it has no secrets
	// and no leaf of its own (me is out of range).
	prev := &Group{s: s, gc: gi.GroupContext, me: treemath.LeafIndex(^uint32(0)), sigPriv: id.sigPriv, privs: map[treemath.NodeIndex][]byte{},
		externalPSKs: map[string][]byte{}, resumption: map[uint64][]byte{}, validateCredential: validate}
	prev.SetTrustedExternalSenders(opts.TrustedExternalSenders)
	for pskID, secret := range opts.ExternalPSKs {
		prev.AddExternalPSK([]byte(pskID), secret)
	}
	if prev.tree, err = loadTree(s, gi, ratchetTree); err != nil {
		return nil, nil, err
	}
	if err := prev.validateTree(); err != nil {
		return nil, nil, err
	}
	if err := prev.checkTrustedExternalSenders(prev.gc.Extensions); err != nil {
		return nil, nil, err
	}
	signer := prev.tree.Leaf(treemath.LeafIndex(gi.Signer))
	if signer == nil {
		return nil, nil, fmt.Errorf("%w: group info signer %d", ErrUnknownSender, gi.Signer)
	}
	if err := s.VerifyWithLabel(signer.SignatureKey, groupInfoLabel, gi.TBS(), gi.Signature); err != nil {
		return nil, nil, fmt.Errorf("group info: %w", err)
	}
	prev.gcBytes = wire.Encode(&prev.gc)
	prev.interim = keysched.InterimTranscriptHash(s, prev.gc.ConfirmedTranscriptHash, gi.ConfirmationTag)

	kemOutput, initSecret, err := s.ExportSender(extPub, externalInitLabel, s.HashSize())
	if err != nil {
		return nil, nil, fmt.Errorf("external init: %w", err)
	}
	committer := wire.Sender{Type: wire.SenderNewMemberCommit}
	ei := &wire.Proposal{Type: wire.ProposalExternalInit, KEMOutput: kemOutput}
	props := []resolvedProposal{{p: ei, sender: committer}}
	if opts.Resync {
		prior := -1
		own := wire.Encode(&id.credential)
		prev.tree.Members(func(l treemath.LeafIndex, leaf *wire.LeafNode) {
			if string(leaf.SignatureKey) == string(id.sigPub) && string(wire.Encode(&leaf.Credential)) == string(own) {
				prior = int(l)
			}
		})
		if prior < 0 {
			return nil, nil, fmt.Errorf("%w: resync without a prior leaf of this identity", ErrUnknownSender)
		}
		props = append(props, resolvedProposal{p: &wire.Proposal{Type: wire.ProposalRemove, Removed: uint32(prior)}, sender: committer})
	}
	for _, pskID := range slices.Sorted(maps.Keys(opts.ExternalPSKs)) {
		nonce, err := randomBytes(s.HashSize())
		if err != nil {
			return nil, nil, err
		}
		psk := &wire.PreSharedKeyID{Type: wire.PSKExternal, PSKID: []byte(pskID), Nonce: nonce}
		props = append(props, resolvedProposal{p: &wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: psk}, sender: committer})
	}
	st, err := prev.stage(props, committer)
	if err != nil {
		return nil, nil, err
	}
	next := st.next
	byValue := make([]wire.ProposalOrRef, len(props))
	for i, rp := range props {
		byValue[i] = wire.ProposalOrRef{Proposal: rp.p}
	}
	// The leaf's encryption key and signature are set by CreateUpdatePath.
	leaf := &wire.LeafNode{
		SignatureKey: id.sigPub, Credential: id.credential,
		Capabilities: defaultCapabilities(uint16(s.ID())), Source: wire.SourceCommit,
	}
	next.me = next.tree.Add(leaf)
	next.privs = map[treemath.NodeIndex][]byte{}
	next.gc.Epoch = prev.gc.Epoch + 1
	gcFor := func(treeHash []byte) []byte {
		gc := next.gc
		gc.TreeHash = treeHash
		return wire.Encode(&gc)
	}
	path, secrets, err := next.tree.CreateUpdatePath(next.me, leaf, id.sigPriv, prev.gc.GroupID, nil, gcFor)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(next.privs, secrets.PrivateKeys)
	next.gc.TreeHash = next.tree.TreeHash()
	fc := &wire.FramedContent{
		GroupID: prev.gc.GroupID, Epoch: prev.gc.Epoch, Sender: committer, ContentType: wire.ContentCommit,
		Commit: &wire.Commit{Proposals: byValue, Path: path},
	}
	ac, err := framing.Sign(s, wire.WirePublicMessage, fc, id.sigPriv, prev.gcBytes)
	if err != nil {
		return nil, nil, err
	}
	var tag []byte
	g, err := prev.finishCommit(next, st, ac, secrets.CommitSecret, initSecret, &tag)
	if err != nil {
		return nil, nil, err
	}
	pm, err := framing.ProtectPublic(s, ac, nil, prev.gcBytes)
	if err != nil {
		return nil, nil, err
	}
	g.confTag = slices.Clone(tag)
	return g, wire.Encode(&wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wire.WirePublicMessage, PublicMessage: pm}), nil
}
