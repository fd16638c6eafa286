package mls

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/framing"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/keysched"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/secrettree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// More errors of the group layer. Test for them with errors.Is.
var (
	// ErrWrongGroup means a message for another group.
	ErrWrongGroup = errors.New("mls: message for another group")
	// ErrWrongEpoch means a message from an epoch other than the current one.
	ErrWrongEpoch = errors.New("mls: message from another epoch")
	// ErrUnknownProposal means a commit references a proposal this member
	// has not received in the current epoch.
	ErrUnknownProposal = errors.New("mls: commit references an unknown proposal")
	// ErrInvalidProposals means a commit's proposal list breaks a rule of
	// RFC 9420, Section 12.2.
	ErrInvalidProposals = errors.New("mls: invalid proposal list")
	// ErrPathRequired means a commit without an UpdatePath whose proposals
	// require one.
	ErrPathRequired = errors.New("mls: commit requires an update path")
	// ErrUnknownSender means a sender that is not a current member.
	ErrUnknownSender = errors.New("mls: unknown sender")
	// ErrUnknownPSK means a PSK this member does not hold.
	ErrUnknownPSK = errors.New("mls: unknown pre-shared key")
	// ErrNoMatchingKeyPackage means a Welcome that holds no secrets for the
	// given KeyPackage.
	ErrNoMatchingKeyPackage = errors.New("mls: welcome is not for this key package")
	// ErrNoRatchetTree means a Welcome without a ratchet_tree extension and
	// no tree supplied.
	ErrNoRatchetTree = errors.New("mls: ratchet tree not available")
	// ErrTreeHash means a tree whose hash differs from the GroupContext's.
	ErrTreeHash = errors.New("mls: tree hash mismatch")
	// ErrOwnCommit means the member received its own commit; it merges its
	// pending commit instead.
	ErrOwnCommit = errors.New("mls: own commit received; merge the pending commit")
	// ErrNoPendingCommit means MergePendingCommit without a pending commit.
	ErrNoPendingCommit = errors.New("mls: no pending commit")
	// ErrRemoved means this member is no longer in the group.
	ErrRemoved = errors.New("mls: member was removed from the group")
	// ErrReInitialized means the group was closed by a ReInit commit; use
	// ReInit to continue in the new group.
	ErrReInitialized = errors.New("mls: group was reinitialized")
	// ErrNotReInitialized means ReInit on a group without a ReInit commit.
	ErrNotReInitialized = errors.New("mls: group has no reinit commit")
	// ErrBadResumption means a Welcome whose reinit or branch PSK does not
	// match the group it claims to resume (RFC 9420, Section 12.4.3.1).
	ErrBadResumption = errors.New("mls: welcome does not match the group it resumes")
	// ErrUnexpectedMessage means a message of a type the call does not take.
	ErrUnexpectedMessage = errors.New("mls: unexpected message type")
)

// Group is one member's state of an MLS group in its current epoch. It is
// not safe for concurrent use, and it is incomparable.
type Group struct {
	_ [0]func()

	s       *suite.Suite
	gc      wire.GroupContext
	gcBytes []byte
	tree    *tree.Tree
	me      treemath.LeafIndex
	sigPriv []byte
	privs   map[treemath.NodeIndex][]byte

	epoch   *keysched.Epoch
	secrets *secrettree.Tree
	interim []byte
	confTag []byte // confirmation tag of the current epoch, for GroupInfo

	proposals    []cachedProposal
	externalPSKs map[string][]byte
	resumption   map[uint64][]byte
	pending      *pendingCommit
	// reinit is set once a ReInit commit took effect: the group is closed
	// and only ReInit may follow.
	reinit *wire.ReInit
	// resumeFrom holds earlier groups whose resumption PSKs this group's
	// commits and Welcome may name (branch and reinit).
	resumeFrom []*Group
	// trustedExternal, when not nil, lists the only external senders'
	// signature keys this member accepts (SetTrustedExternalSenders).
	trustedExternal [][]byte
	// updateKeys maps the encryption keys of this member's Update
	// proposals in the current epoch to their private keys.
	updateKeys map[string][]byte
	removed    bool

	// now is the clock that KeyPackage lifetimes are checked against.
	now func() time.Time
	// maxLifetime bounds not_after - not_before of key_package leaves;
	// zero means no bound.
	maxLifetime time.Duration
	// validateCredential is the Authentication Service check of new
	// members' credentials, required by every constructor; nil refuses
	// every credential.
	validateCredential CredentialValidator

	// retention is how long the previous epoch's application messages stay
	// readable after a commit (see retentionWindow); previous is that
	// epoch's decryption state.
	retention time.Duration
	previous  *previousEpoch

	// PrivateHandshake makes Commit send handshake messages as
	// PrivateMessage instead of PublicMessage.
	PrivateHandshake bool
}

// resumptionKept is how many past epochs' resumption PSKs a group keeps.
const resumptionKept = 8

type cachedProposal struct {
	ref    []byte
	p      *wire.Proposal
	sender wire.Sender
}

// Epoch is the current epoch number.
func (g *Group) Epoch() uint64 { return g.gc.Epoch }

// GroupID is the group's identifier.
func (g *Group) GroupID() []byte { return g.gc.GroupID }

// LeafIndex is this member's leaf index.
func (g *Group) LeafIndex() uint32 { return uint32(g.me) }

// LeafCount is the number of leaf slots in the ratchet tree.
func (g *Group) LeafCount() uint32 { return g.tree.LeafCount() }

// CipherSuite is the group's cipher suite.
func (g *Group) CipherSuite() CipherSuite { return CipherSuite(g.s.ID()) }

// Export is MLS-Exporter(label, context, length) of the current epoch.
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > 0xffff {
		return nil, fmt.Errorf("mls: exporter length %d out of range", length)
	}
	return keysched.Export(g.s, g.epoch.ExporterSecret, label, context, length), nil
}

// EpochAuthenticator is the current epoch_authenticator, which members can
// compare out of band to detect a split view of the group.
func (g *Group) EpochAuthenticator() []byte { return slices.Clone(g.epoch.EpochAuthenticator) }

// Members returns the credential identity of each member by leaf index;
// blank leaves are absent.
func (g *Group) Members() map[uint32][]byte {
	m := map[uint32][]byte{}
	g.tree.Members(func(l treemath.LeafIndex, leaf *wire.LeafNode) {
		m[uint32(l)] = slices.Clone(leaf.Credential.Identity)
	})
	return m
}

// CredentialValidator is the application's Authentication Service (RFC
// 9420, Section 5.3.1): it decides whether a credential (for the basic type,
// the identity; for X.509, the certificate chain, leaf first) may use the
// signature key. It returns a non-nil error to refuse.
//
// Every constructor of a Group that can admit members takes one (NewGroup,
// Join, JoinExternal, UnmarshalState; Branch and ReInit pass on the old
// group's) and refuses nil with ErrNoCredentialValidator: a group never
// accepts credentials unchecked, after a restore included. The group runs
// it on the credential of every leaf that enters it (added members,
// updates, commit paths, external joins) and, when joining, on every
// member of the tree joined.
type CredentialValidator func(credentialType uint16, identity []byte, certificates [][]byte, signatureKey []byte) error

var (
	// ErrCredentialRejected wraps a CredentialValidator's refusal.
	ErrCredentialRejected = errors.New("mls: credential rejected")
	// ErrNoCredentialValidator means a nil CredentialValidator given to a
	// constructor.
	ErrNoCredentialValidator = errors.New("mls: no credential validator")
)

func (g *Group) checkCredential(leaf *wire.LeafNode) error {
	if g.validateCredential == nil {
		return fmt.Errorf("%w: %w", ErrCredentialRejected, ErrNoCredentialValidator)
	}
	c := &leaf.Credential
	if err := g.validateCredential(c.Type, c.Identity, c.Certificates, leaf.SignatureKey); err != nil {
		return fmt.Errorf("%w: %w", ErrCredentialRejected, err)
	}
	return nil
}

// SetClock replaces the clock that KeyPackage lifetimes are checked
// against (time.Now by default).
func (g *Group) SetClock(now func() time.Time) { g.now = now }

// checkLifetime rejects a KeyPackage outside its lifetime (RFC 9420,
// Section 7.3: a MUST for KeyPackages this member commits, RECOMMENDED for
// those it receives in a proposal or commit).
func (g *Group) checkLifetime(kp *wire.KeyPackage) error {
	now := g.now
	if now == nil {
		now = time.Now
	}
	t := now().Unix()
	if t < 0 || uint64(t) < kp.LeafNode.NotBefore || uint64(t) > kp.LeafNode.NotAfter {
		return fmt.Errorf("%w: outside its lifetime [%d, %d]", ErrInvalidKeyPackage, kp.LeafNode.NotBefore, kp.LeafNode.NotAfter)
	}
	return nil
}

// SetMaxLeafLifetime sets the longest lifetime (not_after - not_before) a
// KeyPackage's leaf may claim: RFC 9420, Section 7.2 requires applications
// to define one and reject longer ones. It applies to leaves added from now
// on; JoinOptions.MaxLeafLifetime applies it to a joined tree. Zero, the
// default, sets no bound.
func (g *Group) SetMaxLeafLifetime(d time.Duration) { g.maxLifetime = max(d, 0) }

// checkTotalLifetime rejects a key_package leaf whose lifetime is longer
// than the group allows.
func (g *Group) checkTotalLifetime(leaf *wire.LeafNode) error {
	if g.maxLifetime == 0 || leaf.Source != wire.SourceKeyPackage {
		return nil
	}
	if leaf.NotAfter < leaf.NotBefore || leaf.NotAfter-leaf.NotBefore > uint64(g.maxLifetime/time.Second) {
		return fmt.Errorf("%w: lifetime [%d, %d] longer than %v", ErrInvalidLeafNode, leaf.NotBefore, leaf.NotAfter, g.maxLifetime)
	}
	return nil
}

// AddExternalPSK stores an external pre-shared key under id, for PSK
// proposals and Welcomes that name it.
func (g *Group) AddExternalPSK(id, secret []byte) {
	g.externalPSKs[string(id)] = slices.Clone(secret)
}

// NewGroup creates a one-member group with the given id, in epoch 0.
// validate checks the credential of every member that later enters the
// group; it must not be nil.
func NewGroup(id *Identity, groupID []byte, validate CredentialValidator) (*Group, error) {
	if validate == nil {
		return nil, ErrNoCredentialValidator
	}
	s := id.suite
	encPriv, encPub, err := freshHPKEKey(s)
	if err != nil {
		return nil, err
	}
	leaf := &wire.LeafNode{
		EncryptionKey: encPub, SignatureKey: id.sigPub, Credential: id.credential,
		Capabilities: defaultCapabilities(uint16(s.ID())), Source: wire.SourceCommit, ParentHash: []byte{},
	}
	if err := tree.SignLeaf(s, leaf, id.sigPriv, groupID, 0); err != nil {
		return nil, err
	}
	g := &Group{
		s: s, tree: tree.New(s, leaf), me: 0, sigPriv: id.sigPriv,
		privs:        map[treemath.NodeIndex][]byte{0: encPriv},
		externalPSKs: map[string][]byte{}, resumption: map[uint64][]byte{},
		validateCredential: validate,
	}
	g.gc = wire.GroupContext{
		Version: wire.ProtocolVersion10, CipherSuite: uint16(s.ID()), GroupID: slices.Clone(groupID),
		Epoch: 0, TreeHash: g.tree.TreeHash(), ConfirmedTranscriptHash: []byte{},
	}
	g.gcBytes = wire.Encode(&g.gc)
	initSecret, err := randomBytes(s.HashSize())
	if err != nil {
		return nil, err
	}
	zero := make([]byte, s.HashSize())
	g.installEpoch(keysched.Next(s, initSecret, zero, zero, g.gcBytes))
	// The initial interim transcript hash follows from an empty confirmed
	// transcript hash and the epoch's confirmation tag (RFC 9420, 8.2).
	g.confTag = keysched.ConfirmationTag(s, g.epoch.ConfirmationKey, g.gc.ConfirmedTranscriptHash)
	g.interim = keysched.InterimTranscriptHash(s, g.gc.ConfirmedTranscriptHash, g.confTag)
	return g, nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random: %w", err)
	}
	return b, nil
}

// installEpoch makes e the current epoch's secrets.
func (g *Group) installEpoch(e *keysched.Epoch) {
	g.epoch = e
	g.secrets = secrettree.New(g.s, e.EncryptionSecret, g.tree.LeafCount(), secrettree.DefaultLimits)
	g.resumption[g.gc.Epoch] = e.ResumptionPSK
	delete(g.resumption, g.gc.Epoch-resumptionKept)
	g.proposals = nil
	g.updateKeys = nil
}

// ProtectApplication encrypts application data as a PrivateMessage
// (MLSMessage bytes).
func (g *Group) ProtectApplication(data, authenticatedData []byte) ([]byte, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	if g.reinit != nil {
		return nil, ErrReInitialized
	}
	fc := &wire.FramedContent{
		GroupID: g.gc.GroupID, Epoch: g.gc.Epoch, Sender: wire.Sender{Type: wire.SenderMember, Index: uint32(g.me)},
		AuthenticatedData: authenticatedData, ContentType: wire.ContentApplication, ApplicationData: data,
	}
	ac, err := framing.Sign(g.s, wire.WirePrivateMessage, fc, g.sigPriv, g.gcBytes)
	if err != nil {
		return nil, err
	}
	pm, err := framing.ProtectPrivate(g.s, ac, g.secrets, g.epoch.SenderDataSecret, 0)
	if err != nil {
		return nil, err
	}
	return wire.Encode(&wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wire.WirePrivateMessage, PrivateMessage: pm}), nil
}

// Received is the outcome of processing one message.
type Received struct {
	// Sender is the sender's leaf index (or external sender index).
	Sender uint32
	// SenderType is 1 member, 2 external, 3 new member proposal, 4 new
	// member commit (RFC 9420, Section 6).
	SenderType uint8
	// Epoch is the epoch the message was sent in: the current one, or the
	// previous one for a late application message (see
	// SetPreviousEpochRetention).
	Epoch uint64
	// Application is the plaintext of an application message.
	Application []byte
	// AuthenticatedData is the message's authenticated_data.
	AuthenticatedData []byte
	// Proposal is true when a proposal was stored for a later commit.
	Proposal bool
	// NewEpoch is true when a commit moved the group to a new epoch.
	NewEpoch bool
	// Removed is true when that commit removed this member.
	Removed bool
}

// Process handles one MLSMessage (PublicMessage or PrivateMessage) of the
// current epoch: it stores proposals, applies commits and decrypts
// application data.
func (g *Group) Process(msg []byte) (*Received, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	m, err := wire.DecodeMLSMessage(msg)
	if err != nil {
		return nil, err
	}
	var ac *wire.AuthenticatedContent
	switch m.WireFormat {
	case wire.WirePublicMessage:
		if err := g.checkGroupEpoch(m.PublicMessage.Content.GroupID, m.PublicMessage.Content.Epoch); err != nil {
			return nil, err
		}
		ac, err = framing.UnprotectPublic(g.s, m.PublicMessage, g.epoch.MembershipKey, g.gcBytes)
	case wire.WirePrivateMessage:
		if ac, ok, err := g.openPrevious(m.PrivateMessage); ok {
			if err != nil {
				return nil, err
			}
			return &Received{Sender: ac.Content.Sender.Index, SenderType: uint8(ac.Content.Sender.Type), Epoch: ac.Content.Epoch,
				Application: ac.Content.ApplicationData, AuthenticatedData: ac.Content.AuthenticatedData}, nil
		}
		if err := g.checkGroupEpoch(m.PrivateMessage.GroupID, m.PrivateMessage.Epoch); err != nil {
			return nil, err
		}
		// The signature is checked before the sender's key is consumed, so
		// that no altered or forged copy can make the genuine message
		// undecryptable.
		ac, err = framing.UnprotectPrivate(g.s, m.PrivateMessage, g.secrets, g.epoch.SenderDataSecret, g.verifySender)
	default:
		return nil, fmt.Errorf("%w: wire format %d", ErrUnexpectedMessage, m.WireFormat)
	}
	if err != nil {
		return nil, err
	}
	if m.WireFormat == wire.WirePublicMessage {
		if err := g.verifySender(ac); err != nil {
			return nil, err
		}
	}
	r := &Received{Sender: ac.Content.Sender.Index, SenderType: uint8(ac.Content.Sender.Type), Epoch: ac.Content.Epoch, AuthenticatedData: ac.Content.AuthenticatedData}
	switch ac.Content.ContentType {
	case wire.ContentApplication:
		r.Application = ac.Content.ApplicationData
	case wire.ContentProposal:
		if err := g.storeProposal(ac); err != nil {
			return nil, err
		}
		r.Proposal = true
	case wire.ContentCommit:
		if ac.Content.Sender.Type == wire.SenderMember && treemath.LeafIndex(ac.Content.Sender.Index) == g.me {
			return nil, ErrOwnCommit
		}
		next, err := g.processCommit(ac)
		if err != nil {
			return nil, err
		}
		g.adopt(next)
		r.NewEpoch, r.Removed = true, g.removed
	}
	return r, nil
}

func (g *Group) checkGroupEpoch(groupID []byte, epoch uint64) error {
	if string(groupID) != string(g.gc.GroupID) {
		return ErrWrongGroup
	}
	if epoch != g.gc.Epoch {
		return fmt.Errorf("%w: message epoch %d, group epoch %d", ErrWrongEpoch, epoch, g.gc.Epoch)
	}
	return nil
}

// verifySender checks ac's signature with its sender's key.
func (g *Group) verifySender(ac *wire.AuthenticatedContent) error {
	sigKey, err := g.senderSignatureKey(ac)
	if err != nil {
		return err
	}
	return framing.VerifySignature(g.s, ac, sigKey, g.gcBytes)
}

// senderSignatureKey returns the key that must have signed ac.
func (g *Group) senderSignatureKey(ac *wire.AuthenticatedContent) ([]byte, error) {
	sd := ac.Content.Sender
	switch sd.Type {
	case wire.SenderMember:
		leaf := g.tree.Leaf(treemath.LeafIndex(sd.Index))
		if leaf == nil {
			return nil, fmt.Errorf("%w: leaf %d", ErrUnknownSender, sd.Index)
		}
		return leaf.SignatureKey, nil
	case wire.SenderExternal:
		senders, err := g.externalSenders()
		if err != nil {
			return nil, err
		}
		if int(sd.Index) >= len(senders) {
			return nil, fmt.Errorf("%w: external sender %d", ErrUnknownSender, sd.Index)
		}
		if ac.Content.ContentType != wire.ContentProposal {
			return nil, fmt.Errorf("%w: external sender of content type %d", ErrUnexpectedMessage, ac.Content.ContentType)
		}
		if !g.trustsExternal(senders[sd.Index].SignatureKey) {
			return nil, fmt.Errorf("%w: external sender %d", ErrUntrustedExternalSender, sd.Index)
		}
		return senders[sd.Index].SignatureKey, nil
	case wire.SenderNewMemberProposal:
		p := ac.Content.Proposal
		if ac.Content.ContentType != wire.ContentProposal || p.Type != wire.ProposalAdd {
			return nil, fmt.Errorf("%w: new member proposal that is not an Add", ErrUnexpectedMessage)
		}
		return p.KeyPackage.LeafNode.SignatureKey, nil
	case wire.SenderNewMemberCommit:
		c := ac.Content.Commit
		if ac.Content.ContentType != wire.ContentCommit || c.Path == nil {
			return nil, fmt.Errorf("%w: new member commit without a path", ErrUnexpectedMessage)
		}
		return c.Path.LeafNode.SignatureKey, nil
	}
	return nil, fmt.Errorf("%w: sender type %d", ErrUnknownSender, sd.Type)
}

// externalSender is one entry of the external_senders extension.
type externalSender struct {
	SignatureKey []byte
	Credential   wire.Credential
}

func (g *Group) externalSenders() ([]externalSender, error) {
	data, ok := wire.FindExtension(g.gc.Extensions, wire.ExtExternalSenders)
	if !ok {
		return nil, nil
	}
	return decodeExternalSenders(data)
}

// proposalRef is MakeProposalRef of an AuthenticatedContent.
func (g *Group) proposalRef(ac *wire.AuthenticatedContent) []byte {
	return g.s.RefHash("MLS 1.0 Proposal Reference", wire.Encode(ac))
}

// allowedFromExternal reports whether an external sender may send a
// proposal of type t: those marked "External: Y" in the MLS Proposal Types
// registry (RFC 9420, Sections 12.1.8 and 17.4). Update and ExternalInit
// only come from members and joiners.
func allowedFromExternal(t wire.ProposalType) bool {
	switch t {
	case wire.ProposalAdd, wire.ProposalRemove, wire.ProposalPreSharedKey, wire.ProposalReInit, wire.ProposalGroupContextExtensions:
		return true
	}
	return false
}

func (g *Group) storeProposal(ac *wire.AuthenticatedContent) error {
	p := ac.Content.Proposal
	if ac.Content.Sender.Type == wire.SenderExternal && !allowedFromExternal(p.Type) {
		return fmt.Errorf("%w: proposal type %d from an external sender", ErrInvalidProposals, p.Type)
	}
	if err := g.checkProposalBody(p); err != nil {
		return err
	}
	switch p.Type {
	case wire.ProposalUpdate:
		if ac.Content.Sender.Type != wire.SenderMember {
			return fmt.Errorf("%w: update from a non-member", ErrInvalidProposals)
		}
		if treemath.LeafIndex(ac.Content.Sender.Index) != g.me {
			if err := g.validateLeaf(p.LeafNode, wire.SourceUpdate, ac.Content.Sender.Index); err != nil {
				return err
			}
		}
	case wire.ProposalExternalInit:
		return fmt.Errorf("%w: external init outside a commit", ErrInvalidProposals)
	case wire.ProposalAdd:
		if err := validateKeyPackage(g.s, p.KeyPackage); err != nil {
			return err
		}
		if err := g.checkLifetime(p.KeyPackage); err != nil {
			return err
		}
	}
	g.proposals = append(g.proposals, cachedProposal{ref: g.proposalRef(ac), p: p, sender: ac.Content.Sender})
	return nil
}

// adopt replaces g's state with next's (a staged successor of g), erasing
// the secrets of the epoch left behind except what the retention window
// keeps for its application messages; an older window ends.
func (g *Group) adopt(next *Group) {
	if g.epoch == next.epoch {
		if next.removed {
			// A removed member reads nothing more, late messages included.
			g.dropPrevious()
			next.previous = nil
		}
		*g = *next
		return
	}
	g.dropPrevious()
	previous := g.retire()
	*g = *next
	g.previous = previous
}
