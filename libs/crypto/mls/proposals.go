package mls

import (
	"errors"
	"fmt"
	"slices"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/framing"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// Extension is a GroupContext extension (RFC 9420, Section 13): its type
// from the IANA MLS Extension Types registry and its encoded data.
type Extension struct {
	Type uint16
	Data []byte
}

func toWireExtensions(exts []Extension) []wire.Extension {
	if exts == nil {
		return nil
	}
	out := make([]wire.Extension, len(exts))
	for i, e := range exts {
		out[i] = wire.Extension{Type: e.Type, Data: slices.Clone(e.Data)}
	}
	return out
}

func fromWireExtensions(exts []wire.Extension) []Extension {
	out := make([]Extension, len(exts))
	for i, e := range exts {
		out[i] = Extension{Type: e.Type, Data: slices.Clone(e.Data)}
	}
	return out
}

// Extensions returns the group's GroupContext extensions.
func (g *Group) Extensions() []Extension { return fromWireExtensions(g.gc.Extensions) }

// proposalKind says which proposal a Proposal describes.
type proposalKind uint8

const (
	kindAdd proposalKind = iota + 1
	kindRemove
	kindExternalPSK
	kindResumptionPSK
	kindGroupContextExtensions
	kindReInit
)

// Proposal describes a proposal to send standalone: by a member with
// Group.Propose, or by an external sender with Identity.ProposeExternal
// (RFC 9420, Sections 12.1 and 12.1.8). Build one with AddProposal,
// RemoveProposal, ExternalPSKProposal, ResumptionPSKProposal,
// GroupContextExtensionsProposal or ReInitProposal. The PSK nonce is drawn
// when the proposal is sent.
type Proposal struct {
	kind       proposalKind
	keyPackage []byte
	leaf       uint32
	pskID      []byte
	epoch      uint64
	groupID    []byte
	suite      CipherSuite
	extensions []Extension
}

// AddProposal adds the member of a KeyPackage (MLSMessage bytes; RFC 9420,
// Section 12.1.1).
func AddProposal(keyPackage []byte) Proposal {
	return Proposal{kind: kindAdd, keyPackage: slices.Clone(keyPackage)}
}

// RemoveProposal removes the member at leaf (Section 12.1.3).
func RemoveProposal(leaf uint32) Proposal { return Proposal{kind: kindRemove, leaf: leaf} }

// ExternalPSKProposal injects the external PSK id (Section 12.1.4); the
// members who process the commit must hold it (Group.AddExternalPSK).
func ExternalPSKProposal(id []byte) Proposal {
	return Proposal{kind: kindExternalPSK, pskID: slices.Clone(id)}
}

// ResumptionPSKProposal injects the resumption PSK of an earlier epoch of
// the same group, usage application (Sections 8.6 and 12.1.4).
func ResumptionPSKProposal(epoch uint64) Proposal {
	return Proposal{kind: kindResumptionPSK, epoch: epoch}
}

// GroupContextExtensionsProposal replaces the group's GroupContext
// extensions with exts (Section 12.1.7): for example to add the delivery
// service's external_senders or required_capabilities to a live group.
func GroupContextExtensionsProposal(exts []Extension) Proposal {
	return Proposal{kind: kindGroupContextExtensions, extensions: slices.Clone(exts)}
}

// ReInitProposal closes the group in favour of a new group with the given
// id, cipher suite and extensions, in protocol version mls10 (Sections
// 11.2 and 12.1.5).
func ReInitProposal(newGroupID []byte, cs CipherSuite, exts []Extension) Proposal {
	return Proposal{kind: kindReInit, groupID: slices.Clone(newGroupID), suite: cs, extensions: slices.Clone(exts)}
}

// ErrBadProposal means a Proposal that cannot be sent as described: an
// unknown kind, a KeyPackage of another suite, a ReInit to an unsupported
// suite.
var ErrBadProposal = errors.New("mls: proposal cannot be built")

// toWire builds the wire proposal in suite s for group groupID; nonces are
// fresh.
func (p Proposal) toWire(s *suite.Suite, groupID []byte) (*wire.Proposal, error) {
	switch p.kind {
	case kindAdd:
		kp, err := parseKeyPackage(s, p.keyPackage)
		if err != nil {
			return nil, err
		}
		return &wire.Proposal{Type: wire.ProposalAdd, KeyPackage: kp}, nil
	case kindRemove:
		return &wire.Proposal{Type: wire.ProposalRemove, Removed: p.leaf}, nil
	case kindExternalPSK, kindResumptionPSK:
		nonce, err := randomBytes(s.HashSize())
		if err != nil {
			return nil, err
		}
		id := &wire.PreSharedKeyID{Type: wire.PSKExternal, PSKID: p.pskID, Nonce: nonce}
		if p.kind == kindResumptionPSK {
			id = &wire.PreSharedKeyID{Type: wire.PSKResumption, Usage: wire.ResumptionApplication, PSKGroupID: slices.Clone(groupID), PSKEpoch: p.epoch, Nonce: nonce}
		}
		return &wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: id}, nil
	case kindGroupContextExtensions:
		exts := toWireExtensions(p.extensions)
		if exts == nil {
			exts = []wire.Extension{}
		}
		return &wire.Proposal{Type: wire.ProposalGroupContextExtensions, Extensions: exts}, nil
	case kindReInit:
		if _, err := suite.New(suite.ID(p.suite)); err != nil {
			return nil, fmt.Errorf("%w: reinit: %w", ErrBadProposal, err)
		}
		return &wire.Proposal{Type: wire.ProposalReInit, ReInit: &wire.ReInit{
			GroupID: p.groupID, Version: wire.ProtocolVersion10, CipherSuite: uint16(p.suite), Extensions: toWireExtensions(p.extensions),
		}}, nil
	}
	return nil, fmt.Errorf("%w: kind %d", ErrBadProposal, p.kind)
}

// Propose returns a proposal message (MLSMessage bytes) for another member
// to commit, and stores it so that this member's own next commit includes
// it. Before sending, it checks what this member can: a PSK it does not
// hold is ErrUnknownPSK, a removal of a blank leaf ErrUnknownSender,
// extensions some member does not support ErrInvalidProposals.
func (g *Group) Propose(p Proposal) ([]byte, error) {
	if g.reinit != nil {
		return nil, ErrReInitialized
	}
	wp, err := p.toWire(g.s, g.gc.GroupID)
	if err != nil {
		return nil, err
	}
	if err := g.checkOwnProposal(wp); err != nil {
		return nil, err
	}
	return g.propose(wp)
}

// checkOwnProposal rejects a proposal this member would refuse to commit.
func (g *Group) checkOwnProposal(p *wire.Proposal) error {
	switch p.Type {
	case wire.ProposalRemove:
		if g.tree.Leaf(treemath.LeafIndex(p.Removed)) == nil {
			return fmt.Errorf("%w: leaf %d", ErrUnknownSender, p.Removed)
		}
	case wire.ProposalPreSharedKey:
		if _, err := g.pskSecret([]wire.PreSharedKeyID{*p.PSK}); err != nil {
			return err
		}
	case wire.ProposalGroupContextExtensions:
		if err := g.checkExtensionsFit(p.Extensions); err != nil {
			return err
		}
	}
	return g.checkProposalBody(p)
}

// checkExtensionsFit checks that every member supports the extensions
// exts would give the group, and that the external senders they name are
// ones this member trusts.
func (g *Group) checkExtensionsFit(exts []wire.Extension) error {
	var err error
	g.tree.Members(func(l treemath.LeafIndex, leaf *wire.LeafNode) {
		if err == nil {
			if e := supportsExtensions(leaf, exts); e != nil {
				err = fmt.Errorf("%w: leaf %d: %w", ErrInvalidProposals, l, e)
			}
		}
	})
	if err != nil {
		return err
	}
	return g.checkTrustedExternalSenders(exts)
}

// ExternalSender is one entry of the external_senders extension (RFC 9420,
// Section 12.1.8.1): a signature key and basic credential allowed to send
// proposals to the group from outside it, such as the delivery service's.
type ExternalSender struct {
	SignatureKey []byte
	// Identity is the basic credential's identity.
	Identity []byte
}

// ExternalSender returns id as an external sender, for a group's
// external_senders extension.
func (id *Identity) ExternalSender() ExternalSender {
	return ExternalSender{SignatureKey: slices.Clone(id.sigPub), Identity: slices.Clone(id.credential.Identity)}
}

// Bytes encodes the ExternalSender struct of RFC 9420, Section 12.1.8.1.
func (e ExternalSender) Bytes() []byte {
	w := tlscodec.NewWriter(nil)
	e.marshal(w)
	return w.Bytes()
}

func (e ExternalSender) marshal(w *tlscodec.Writer) {
	w.Opaque(e.SignatureKey)
	c := wire.Credential{Type: wire.CredentialBasic, Identity: e.Identity}
	c.Marshal(w)
}

// ParseExternalSender decodes an ExternalSender struct. Only basic
// credentials are accepted.
func ParseExternalSender(b []byte) (ExternalSender, error) {
	r := tlscodec.NewReader(b)
	key := r.Opaque()
	cred, err := wire.ReadCredential(r)
	if err == nil {
		err = r.Finish()
	}
	if err != nil {
		return ExternalSender{}, fmt.Errorf("%w: external sender: %w", wire.ErrMalformed, err)
	}
	if cred.Type != wire.CredentialBasic {
		return ExternalSender{}, fmt.Errorf("%w: external sender credential type %d", ErrInvalidProposals, cred.Type)
	}
	return ExternalSender{SignatureKey: slices.Clone(key), Identity: slices.Clone(cred.Identity)}, nil
}

// ExternalSendersExtension builds the external_senders GroupContext
// extension listing senders, in order: a sender's index in an external
// proposal is its position here.
func ExternalSendersExtension(senders []ExternalSender) Extension {
	w := tlscodec.NewWriter(nil)
	w.Vector(func(w *tlscodec.Writer) {
		for _, s := range senders {
			s.marshal(w)
		}
	})
	return Extension{Type: wire.ExtExternalSenders, Data: w.Bytes()}
}

// ExternalSenders returns the entries of the group's external_senders
// extension, in order.
func (g *Group) ExternalSenders() ([]ExternalSender, error) {
	data, ok := wire.FindExtension(g.gc.Extensions, wire.ExtExternalSenders)
	if !ok {
		return nil, nil
	}
	return ParseExternalSendersExtension(data)
}

// ErrUntrustedExternalSender means an external sender (in an external
// proposal, or in external_senders extensions proposed, committed or found
// at join) whose key is not among those set with SetTrustedExternalSenders.
var ErrUntrustedExternalSender = errors.New("mls: external sender not trusted")

// SetTrustedExternalSenders restricts the external senders this member
// accepts to the given signature keys (for Guardyn, the delivery service's
// published key): an external proposal signed by another sender, and a
// GroupContextExtensions proposal or commit whose external_senders names
// another key, are refused with ErrUntrustedExternalSender, even when the
// group's extension lists that sender. nil, the default, accepts what the
// group's external_senders extension lists (RFC 9420, Section 12.1.8.1).
// Like the clock, the setting is not part of the stored state.
func (g *Group) SetTrustedExternalSenders(signatureKeys [][]byte) {
	g.trustedExternal = nil
	if signatureKeys != nil {
		g.trustedExternal = make([][]byte, len(signatureKeys))
		for i, k := range signatureKeys {
			g.trustedExternal[i] = slices.Clone(k)
		}
	}
}

// checkTrustedExternalSenders refuses external_senders in exts that name a
// key this member does not trust.
func (g *Group) checkTrustedExternalSenders(exts []wire.Extension) error {
	if g.trustedExternal == nil {
		return nil
	}
	data, ok := wire.FindExtension(exts, wire.ExtExternalSenders)
	if !ok {
		return nil
	}
	senders, err := decodeExternalSenders(data)
	if err != nil {
		return err
	}
	for i, s := range senders {
		if !g.trustsExternal(s.SignatureKey) {
			return fmt.Errorf("%w: external sender %d", ErrUntrustedExternalSender, i)
		}
	}
	return nil
}

func (g *Group) trustsExternal(key []byte) bool {
	return g.trustedExternal == nil || slices.ContainsFunc(g.trustedExternal, func(k []byte) bool { return string(k) == string(key) })
}

// ProposeExternal returns a proposal (MLSMessage bytes, a PublicMessage)
// that id sends to the group groupID in epoch as the external sender at
// senderIndex of the group's external_senders extension (RFC 9420,
// Section 12.1.8.1). An external sender holds no group state: it signs
// the proposal without the GroupContext and without a membership tag
// (Section 6.1). Only the proposal types an external sender may send are
// accepted: Add, Remove, PreSharedKey, ReInit and GroupContextExtensions.
// A resumption PSK names epoch of groupID.
func (id *Identity) ProposeExternal(groupID []byte, epoch uint64, senderIndex uint32, p Proposal) ([]byte, error) {
	wp, err := p.toWire(id.suite, groupID)
	if err != nil {
		return nil, err
	}
	sender := wire.Sender{Type: wire.SenderExternal, Index: senderIndex}
	return id.signPublicProposal(groupID, epoch, sender, wp)
}

// NewMemberAddProposal returns a proposal by which the owner of kp asks
// to be added to the group a GroupInfo (MLSMessage bytes) describes: an
// Add of kp sent by a new_member_proposal sender, signed with kp's key
// (RFC 9420, Section 12.1.8). A member then commits it. The GroupInfo only
// provides the group id, epoch and suite; it is not verified here.
func NewMemberAddProposal(kp *KeyPackage, groupInfo []byte) ([]byte, error) {
	m, err := wire.DecodeMLSMessage(groupInfo)
	if err != nil {
		return nil, err
	}
	if m.GroupInfo == nil {
		return nil, fmt.Errorf("%w: wire format %d, want group info", ErrUnexpectedMessage, m.WireFormat)
	}
	gc := &m.GroupInfo.GroupContext
	if gc.CipherSuite != kp.kp.CipherSuite {
		return nil, fmt.Errorf("%w: group suite %d, key package suite %d", ErrNoMatchingKeyPackage, gc.CipherSuite, kp.kp.CipherSuite)
	}
	p := &wire.Proposal{Type: wire.ProposalAdd, KeyPackage: &kp.kp}
	return kp.identity.signPublicProposal(gc.GroupID, gc.Epoch, wire.Sender{Type: wire.SenderNewMemberProposal}, p)
}

// signPublicProposal frames a proposal from a non-member sender as a
// signed PublicMessage.
func (id *Identity) signPublicProposal(groupID []byte, epoch uint64, sender wire.Sender, p *wire.Proposal) ([]byte, error) {
	if sender.Type == wire.SenderExternal && !allowedFromExternal(p.Type) {
		return nil, fmt.Errorf("%w: proposal type %d from an external sender", ErrBadProposal, p.Type)
	}
	fc := &wire.FramedContent{
		GroupID: slices.Clone(groupID), Epoch: epoch, Sender: sender, ContentType: wire.ContentProposal, Proposal: p,
	}
	// The GroupContext is only part of what members and new-member
	// committers sign (Section 6.1), so none is needed here.
	ac, err := framing.Sign(id.suite, wire.WirePublicMessage, fc, id.sigPriv, nil)
	if err != nil {
		return nil, err
	}
	pm, err := framing.ProtectPublic(id.suite, ac, nil, nil)
	if err != nil {
		return nil, err
	}
	return wire.Encode(&wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wire.WirePublicMessage, PublicMessage: pm}), nil
}

// ReInitParams are the parameters of the new group a ReInit names (RFC
// 9420, Section 12.1.5).
type ReInitParams struct {
	GroupID     []byte
	Version     uint16
	CipherSuite CipherSuite
	Extensions  []Extension
}

// PendingReInit returns the parameters of the ReInit that closed the group
// (once its commit is merged or processed), so that members can prepare a
// KeyPackage in the new suite; ok is false when the group was not
// reinitialized.
func (g *Group) PendingReInit() (params ReInitParams, ok bool) {
	if g.reinit == nil {
		return ReInitParams{}, false
	}
	r := g.reinit
	return ReInitParams{GroupID: slices.Clone(r.GroupID), Version: r.Version, CipherSuite: CipherSuite(r.CipherSuite), Extensions: fromWireExtensions(r.Extensions)}, true
}

// ParseExternalSendersExtension decodes the data of an external_senders
// extension (for example from MessageInfo.GroupContextExtensions of a
// GroupInfo), so that an external sender can find its index.
func ParseExternalSendersExtension(data []byte) ([]ExternalSender, error) {
	senders, err := decodeExternalSenders(data)
	if err != nil {
		return nil, err
	}
	out := make([]ExternalSender, len(senders))
	for i, s := range senders {
		out[i] = ExternalSender{SignatureKey: slices.Clone(s.SignatureKey), Identity: slices.Clone(s.Credential.Identity)}
	}
	return out, nil
}

// Identity returns the identity that owns the KeyPackage.
func (k *KeyPackage) Identity() *Identity { return k.identity }

// PendingRatchetTree returns the encoded ratchet tree of the epoch a
// pending commit leads to, for joiners of its Welcome when the tree is not
// inline; nil without a pending commit.
func (g *Group) PendingRatchetTree() []byte {
	if g.pending == nil {
		return nil
	}
	return g.pending.next.RatchetTree()
}

// TreeMembers returns the credential identity of each member, by leaf, of
// the ratchet tree a GroupInfo (MLSMessage bytes) carries, or of tree when
// it carries none. Nothing is verified: it is for an external sender that
// must name a member's leaf, not for a joiner (use JoinExternal).
func TreeMembers(groupInfo, tree []byte) (map[uint32][]byte, error) {
	m, err := wire.DecodeMLSMessage(groupInfo)
	if err != nil {
		return nil, err
	}
	if m.GroupInfo == nil {
		return nil, fmt.Errorf("%w: wire format %d, want group info", ErrUnexpectedMessage, m.WireFormat)
	}
	s, err := suite.New(suite.ID(m.GroupInfo.GroupContext.CipherSuite))
	if err != nil {
		return nil, err
	}
	t, err := loadTree(s, m.GroupInfo, tree)
	if err != nil {
		return nil, err
	}
	out := map[uint32][]byte{}
	t.Members(func(l treemath.LeafIndex, leaf *wire.LeafNode) {
		out[uint32(l)] = slices.Clone(leaf.Credential.Identity)
	})
	return out, nil
}

// Name returns the identity of the basic credential.
func (id *Identity) Name() []byte { return slices.Clone(id.credential.Identity) }
