package wire

import (
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
)

// ProposalType of a Proposal (RFC 9420, Section 17.4).
type ProposalType uint16

// Proposal types.
const (
	ProposalAdd                    ProposalType = 1
	ProposalUpdate                 ProposalType = 2
	ProposalRemove                 ProposalType = 3
	ProposalPreSharedKey           ProposalType = 4
	ProposalReInit                 ProposalType = 5
	ProposalExternalInit           ProposalType = 6
	ProposalGroupContextExtensions ProposalType = 7
)

// Proposal is one proposed change to a group (RFC 9420, Section 12.1). The
// field used depends on Type.
type Proposal struct {
	Type       ProposalType
	KeyPackage *KeyPackage     // Add
	LeafNode   *LeafNode       // Update
	Removed    uint32          // Remove
	PSK        *PreSharedKeyID // PreSharedKey
	ReInit     *ReInit         // ReInit
	KEMOutput  []byte          // ExternalInit
	Extensions []Extension     // GroupContextExtensions
}

// ReInit is the body of a ReInit proposal.
type ReInit struct {
	GroupID     []byte
	Version     uint16
	CipherSuite uint16
	Extensions  []Extension
}

// Marshal encodes p.
func (p *Proposal) Marshal(w *tlscodec.Writer) {
	w.Uint16(uint16(p.Type))
	p.MarshalBody(w)
}

// MarshalBody encodes the body of p without its type (the Add, Update, ...
// struct alone).
func (p *Proposal) MarshalBody(w *tlscodec.Writer) {
	switch p.Type {
	case ProposalAdd:
		p.KeyPackage.Marshal(w)
	case ProposalUpdate:
		p.LeafNode.Marshal(w)
	case ProposalRemove:
		w.Uint32(p.Removed)
	case ProposalPreSharedKey:
		p.PSK.Marshal(w)
	case ProposalReInit:
		w.Opaque(p.ReInit.GroupID)
		w.Uint16(p.ReInit.Version)
		w.Uint16(p.ReInit.CipherSuite)
		writeExtensions(w, p.ReInit.Extensions)
	case ProposalExternalInit:
		w.Opaque(p.KEMOutput)
	case ProposalGroupContextExtensions:
		writeExtensions(w, p.Extensions)
	}
}

func (p *Proposal) read(r *tlscodec.Reader) {
	p.Type = ProposalType(r.Uint16())
	p.readBody(r)
}

func (p *Proposal) readBody(r *tlscodec.Reader) {
	switch p.Type {
	case ProposalAdd:
		p.KeyPackage = new(KeyPackage)
		p.KeyPackage.read(r)
	case ProposalUpdate:
		p.LeafNode = new(LeafNode)
		p.LeafNode.read(r)
	case ProposalRemove:
		p.Removed = r.Uint32()
	case ProposalPreSharedKey:
		p.PSK = new(PreSharedKeyID)
		p.PSK.read(r)
	case ProposalReInit:
		p.ReInit = &ReInit{GroupID: r.Opaque(), Version: r.Uint16(), CipherSuite: r.Uint16()}
		p.ReInit.Extensions = readExtensions(r)
	case ProposalExternalInit:
		p.KEMOutput = r.Opaque()
	case ProposalGroupContextExtensions:
		p.Extensions = readExtensions(r)
	default:
		invalid(r, "proposal type %d", p.Type)
	}
}

// DecodeProposal decodes a Proposal.
func DecodeProposal(b []byte) (*Proposal, error) {
	p := new(Proposal)
	return p, decode("proposal", b, p.read)
}

// DecodeProposalBody decodes the body of a proposal of type t.
func DecodeProposalBody(t ProposalType, b []byte) (*Proposal, error) {
	p := &Proposal{Type: t}
	return p, decode("proposal body", b, p.readBody)
}

// ProposalOrRef is a proposal carried in a Commit by value or by reference.
type ProposalOrRef struct {
	Proposal  *Proposal // by value
	Reference []byte    // by reference (a ProposalRef)
}

const (
	proposalOrRefValue     = 1
	proposalOrRefReference = 2
)

// Commit applies proposals and optionally updates the sender's path (RFC
// 9420, Section 12.4).
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath
}

// Marshal encodes c.
func (c *Commit) Marshal(w *tlscodec.Writer) {
	w.Vector(func(w *tlscodec.Writer) {
		for _, p := range c.Proposals {
			if p.Proposal != nil {
				w.Uint8(proposalOrRefValue)
				p.Proposal.Marshal(w)
			} else {
				w.Uint8(proposalOrRefReference)
				w.Opaque(p.Reference)
			}
		}
	})
	if c.Path == nil {
		w.Uint8(0)
		return
	}
	w.Uint8(1)
	c.Path.Marshal(w)
}

func (c *Commit) read(r *tlscodec.Reader) {
	r.Each(maxList, func(r *tlscodec.Reader) {
		switch t := r.Uint8(); t {
		case proposalOrRefValue:
			p := new(Proposal)
			p.read(r)
			c.Proposals = append(c.Proposals, ProposalOrRef{Proposal: p})
		case proposalOrRefReference:
			c.Proposals = append(c.Proposals, ProposalOrRef{Reference: r.Opaque()})
		default:
			invalid(r, "proposal-or-ref type %d", t)
		}
	})
	if r.Optional() {
		c.Path = new(UpdatePath)
		c.Path.read(r)
	}
}

// DecodeCommit decodes a Commit.
func DecodeCommit(b []byte) (*Commit, error) {
	c := new(Commit)
	return c, decode("commit", b, c.read)
}

// SenderType says who sent a framed message.
type SenderType uint8

// Sender types.
const (
	SenderMember            SenderType = 1
	SenderExternal          SenderType = 2
	SenderNewMemberProposal SenderType = 3
	SenderNewMemberCommit   SenderType = 4
)

// Sender of framed content. Index is the leaf index of a member or the
// external_senders index of an external sender.
type Sender struct {
	Type  SenderType
	Index uint32
}

// Marshal encodes s.
func (s *Sender) Marshal(w *tlscodec.Writer) {
	w.Uint8(uint8(s.Type))
	if s.Type == SenderMember || s.Type == SenderExternal {
		w.Uint32(s.Index)
	}
}

func (s *Sender) read(r *tlscodec.Reader) {
	s.Type = SenderType(r.Uint8())
	switch s.Type {
	case SenderMember, SenderExternal:
		s.Index = r.Uint32()
	case SenderNewMemberProposal, SenderNewMemberCommit:
	default:
		invalid(r, "sender type %d", s.Type)
	}
}

// FramedContent is the content of a handshake or application message (RFC
// 9420, Section 6).
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	ApplicationData   []byte
	Proposal          *Proposal
	Commit            *Commit
}

// Marshal encodes c.
func (c *FramedContent) Marshal(w *tlscodec.Writer) {
	w.Opaque(c.GroupID)
	w.Uint64(c.Epoch)
	c.Sender.Marshal(w)
	w.Opaque(c.AuthenticatedData)
	w.Uint8(uint8(c.ContentType))
	c.marshalBody(w)
}

func (c *FramedContent) marshalBody(w *tlscodec.Writer) {
	switch c.ContentType {
	case ContentApplication:
		w.Opaque(c.ApplicationData)
	case ContentProposal:
		c.Proposal.Marshal(w)
	case ContentCommit:
		c.Commit.Marshal(w)
	}
}

func (c *FramedContent) readBody(r *tlscodec.Reader) {
	switch c.ContentType {
	case ContentApplication:
		c.ApplicationData = r.Opaque()
	case ContentProposal:
		c.Proposal = new(Proposal)
		c.Proposal.read(r)
	case ContentCommit:
		c.Commit = new(Commit)
		c.Commit.read(r)
	default:
		invalid(r, "content type %d", c.ContentType)
	}
}

func (c *FramedContent) read(r *tlscodec.Reader) {
	c.GroupID = r.Opaque()
	c.Epoch = r.Uint64()
	c.Sender.read(r)
	c.AuthenticatedData = r.Opaque()
	c.ContentType = ContentType(r.Uint8())
	c.readBody(r)
}

// FramedContentAuthData is the signature of framed content and, for a
// commit, its confirmation tag.
type FramedContentAuthData struct {
	Signature       []byte
	ConfirmationTag []byte
}

func (a *FramedContentAuthData) marshal(w *tlscodec.Writer, ct ContentType) {
	w.Opaque(a.Signature)
	if ct == ContentCommit {
		w.Opaque(a.ConfirmationTag)
	}
}

func (a *FramedContentAuthData) read(r *tlscodec.Reader, ct ContentType) {
	a.Signature = r.Opaque()
	if ct == ContentCommit {
		a.ConfirmationTag = r.Opaque()
	}
}

// AuthenticatedContent is framed content with its wire format and
// authentication data; it is what transcript hashes and proposal references
// cover.
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData
}

// Marshal encodes a.
func (a *AuthenticatedContent) Marshal(w *tlscodec.Writer) {
	w.Uint16(uint16(a.WireFormat))
	a.Content.Marshal(w)
	a.Auth.marshal(w, a.Content.ContentType)
}

func (a *AuthenticatedContent) read(r *tlscodec.Reader) {
	a.WireFormat = WireFormat(r.Uint16())
	a.Content.read(r)
	a.Auth.read(r, a.Content.ContentType)
}

// DecodeAuthenticatedContent decodes an AuthenticatedContent.
func DecodeAuthenticatedContent(b []byte) (*AuthenticatedContent, error) {
	a := new(AuthenticatedContent)
	return a, decode("authenticated content", b, a.read)
}

// TBS returns FramedContentTBS, the signed part of a. groupContext is the
// encoded GroupContext; it is included for member and new-member-commit
// senders only.
func (a *AuthenticatedContent) TBS(groupContext []byte) []byte {
	w := tlscodec.NewWriter(nil)
	w.Uint16(ProtocolVersion10)
	w.Uint16(uint16(a.WireFormat))
	a.Content.Marshal(w)
	if t := a.Content.Sender.Type; t == SenderMember || t == SenderNewMemberCommit {
		w.Raw(groupContext)
	}
	return w.Bytes()
}

// TBM returns AuthenticatedContentTBM, the input of the membership tag.
func (a *AuthenticatedContent) TBM(groupContext []byte) []byte {
	w := tlscodec.NewWriter(a.TBS(groupContext))
	a.Auth.marshal(w, a.Content.ContentType)
	return w.Bytes()
}

// ConfirmedTranscriptHashInput returns the bytes hashed into the confirmed
// transcript hash (RFC 9420, Section 8.2).
func (a *AuthenticatedContent) ConfirmedTranscriptHashInput() []byte {
	w := tlscodec.NewWriter(nil)
	w.Uint16(uint16(a.WireFormat))
	a.Content.Marshal(w)
	w.Opaque(a.Auth.Signature)
	return w.Bytes()
}

// PublicMessage is a signed, optionally MACed plaintext message (RFC 9420,
// Section 6.2).
type PublicMessage struct {
	Content       FramedContent
	Auth          FramedContentAuthData
	MembershipTag []byte // member senders only
}

// Marshal encodes m.
func (m *PublicMessage) Marshal(w *tlscodec.Writer) {
	m.Content.Marshal(w)
	m.Auth.marshal(w, m.Content.ContentType)
	if m.Content.Sender.Type == SenderMember {
		w.Opaque(m.MembershipTag)
	}
}

func (m *PublicMessage) read(r *tlscodec.Reader) {
	m.Content.read(r)
	m.Auth.read(r, m.Content.ContentType)
	if m.Content.Sender.Type == SenderMember {
		m.MembershipTag = r.Opaque()
	}
}

// Authenticated returns the AuthenticatedContent m carries.
func (m *PublicMessage) Authenticated() *AuthenticatedContent {
	return &AuthenticatedContent{WireFormat: WirePublicMessage, Content: m.Content, Auth: m.Auth}
}

// PrivateMessage is an encrypted message (RFC 9420, Section 6.3).
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

// Marshal encodes m.
func (m *PrivateMessage) Marshal(w *tlscodec.Writer) {
	w.Opaque(m.GroupID)
	w.Uint64(m.Epoch)
	w.Uint8(uint8(m.ContentType))
	w.Opaque(m.AuthenticatedData)
	w.Opaque(m.EncryptedSenderData)
	w.Opaque(m.Ciphertext)
}

func (m *PrivateMessage) read(r *tlscodec.Reader) {
	m.GroupID = r.Opaque()
	m.Epoch = r.Uint64()
	m.ContentType = ContentType(r.Uint8())
	if m.ContentType < ContentApplication || m.ContentType > ContentCommit {
		invalid(r, "content type %d", m.ContentType)
	}
	m.AuthenticatedData = r.Opaque()
	m.EncryptedSenderData = r.Opaque()
	m.Ciphertext = r.Opaque()
}

// SenderDataAAD returns the AAD of the sender data encryption.
func (m *PrivateMessage) SenderDataAAD() []byte {
	w := tlscodec.NewWriter(nil)
	w.Opaque(m.GroupID)
	w.Uint64(m.Epoch)
	w.Uint8(uint8(m.ContentType))
	return w.Bytes()
}

// ContentAAD returns PrivateContentAAD, the AAD of the content encryption.
func (m *PrivateMessage) ContentAAD() []byte {
	w := tlscodec.NewWriter(m.SenderDataAAD())
	w.Opaque(m.AuthenticatedData)
	return w.Bytes()
}

// SenderData is the encrypted header of a PrivateMessage.
type SenderData struct {
	LeafIndex  uint32
	Generation uint32
	ReuseGuard [4]byte
}

// Marshal encodes s.
func (s *SenderData) Marshal(w *tlscodec.Writer) {
	w.Uint32(s.LeafIndex)
	w.Uint32(s.Generation)
	w.Raw(s.ReuseGuard[:])
}

// DecodeSenderData decodes a SenderData.
func DecodeSenderData(b []byte) (*SenderData, error) {
	s := new(SenderData)
	return s, decode("sender data", b, func(r *tlscodec.Reader) {
		s.LeafIndex = r.Uint32()
		s.Generation = r.Uint32()
		copy(s.ReuseGuard[:], r.Raw(4))
	})
}

// MarshalPrivateContent encodes PrivateMessageContent: the body of c, its
// auth data and padding zero bytes.
func MarshalPrivateContent(c *FramedContent, auth *FramedContentAuthData, padding int) []byte {
	w := tlscodec.NewWriter(nil)
	c.marshalBody(w)
	auth.marshal(w, c.ContentType)
	w.Raw(make([]byte, padding))
	return w.Bytes()
}

// DecodePrivateContent decodes PrivateMessageContent into the body fields of
// c (whose ContentType must be set) and returns the auth data. Padding must
// be all zero.
func DecodePrivateContent(b []byte, c *FramedContent) (*FramedContentAuthData, error) {
	auth := new(FramedContentAuthData)
	return auth, decode("private message content", b, func(r *tlscodec.Reader) {
		c.readBody(r)
		auth.read(r, c.ContentType)
		for _, p := range r.Raw(r.Len()) {
			if p != 0 {
				invalid(r, "non-zero padding")
				return
			}
		}
	})
}

// GroupInfo describes a group for joiners (RFC 9420, Section 12.4.3).
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      []Extension
	ConfirmationTag []byte
	Signer          uint32
	Signature       []byte
}

// TBS returns GroupInfoTBS, the signed part of g.
func (g *GroupInfo) TBS() []byte {
	w := tlscodec.NewWriter(nil)
	g.GroupContext.Marshal(w)
	writeExtensions(w, g.Extensions)
	w.Opaque(g.ConfirmationTag)
	w.Uint32(g.Signer)
	return w.Bytes()
}

// Marshal encodes g.
func (g *GroupInfo) Marshal(w *tlscodec.Writer) {
	w.Raw(g.TBS())
	w.Opaque(g.Signature)
}

func (g *GroupInfo) read(r *tlscodec.Reader) {
	g.GroupContext.read(r)
	g.Extensions = readExtensions(r)
	g.ConfirmationTag = r.Opaque()
	g.Signer = r.Uint32()
	g.Signature = r.Opaque()
}

// DecodeGroupInfo decodes a bare GroupInfo.
func DecodeGroupInfo(b []byte) (*GroupInfo, error) {
	g := new(GroupInfo)
	return g, decode("group info", b, g.read)
}

// GroupSecrets is what a Welcome encrypts to each new member.
type GroupSecrets struct {
	JoinerSecret []byte
	PathSecret   []byte // nil when absent
	PSKs         []PreSharedKeyID
}

// Marshal encodes g.
func (g *GroupSecrets) Marshal(w *tlscodec.Writer) {
	w.Opaque(g.JoinerSecret)
	if g.PathSecret == nil {
		w.Uint8(0)
	} else {
		w.Uint8(1)
		w.Opaque(g.PathSecret)
	}
	w.Vector(func(w *tlscodec.Writer) {
		for i := range g.PSKs {
			g.PSKs[i].Marshal(w)
		}
	})
}

func (g *GroupSecrets) read(r *tlscodec.Reader) {
	g.JoinerSecret = r.Opaque()
	if r.Optional() {
		g.PathSecret = r.Opaque()
	}
	r.Each(maxList, func(r *tlscodec.Reader) {
		var p PreSharedKeyID
		p.read(r)
		g.PSKs = append(g.PSKs, p)
	})
}

// DecodeGroupSecrets decodes a GroupSecrets.
func DecodeGroupSecrets(b []byte) (*GroupSecrets, error) {
	g := new(GroupSecrets)
	return g, decode("group secrets", b, g.read)
}

// EncryptedGroupSecrets is GroupSecrets encrypted to one KeyPackage.
type EncryptedGroupSecrets struct {
	NewMember []byte // KeyPackageRef
	Secrets   HPKECiphertext
}

// Welcome brings new members into a group (RFC 9420, Section 12.4.3.1).
type Welcome struct {
	CipherSuite        uint16
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

// Marshal encodes wl.
func (wl *Welcome) Marshal(w *tlscodec.Writer) {
	w.Uint16(wl.CipherSuite)
	w.Vector(func(w *tlscodec.Writer) {
		for i := range wl.Secrets {
			w.Opaque(wl.Secrets[i].NewMember)
			wl.Secrets[i].Secrets.Marshal(w)
		}
	})
	w.Opaque(wl.EncryptedGroupInfo)
}

func (wl *Welcome) read(r *tlscodec.Reader) {
	wl.CipherSuite = r.Uint16()
	r.Each(maxList, func(r *tlscodec.Reader) {
		var e EncryptedGroupSecrets
		e.NewMember = r.Opaque()
		e.Secrets.read(r)
		wl.Secrets = append(wl.Secrets, e)
	})
	wl.EncryptedGroupInfo = r.Opaque()
}

// DecodeWelcome decodes a bare Welcome.
func DecodeWelcome(b []byte) (*Welcome, error) {
	wl := new(Welcome)
	return wl, decode("welcome", b, wl.read)
}

// MLSMessage is the outer envelope of every MLS message (RFC 9420,
// Section 6). Exactly one body field is set, matching WireFormat.
type MLSMessage struct {
	Version        uint16
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

// Marshal encodes m.
func (m *MLSMessage) Marshal(w *tlscodec.Writer) {
	w.Uint16(m.Version)
	w.Uint16(uint16(m.WireFormat))
	switch m.WireFormat {
	case WirePublicMessage:
		m.PublicMessage.Marshal(w)
	case WirePrivateMessage:
		m.PrivateMessage.Marshal(w)
	case WireWelcome:
		m.Welcome.Marshal(w)
	case WireGroupInfo:
		m.GroupInfo.Marshal(w)
	case WireKeyPackage:
		m.KeyPackage.Marshal(w)
	}
}

func (m *MLSMessage) read(r *tlscodec.Reader) {
	m.Version = r.Uint16()
	if r.Err() == nil && m.Version != ProtocolVersion10 {
		invalid(r, "protocol version %d", m.Version)
		return
	}
	m.WireFormat = WireFormat(r.Uint16())
	switch m.WireFormat {
	case WirePublicMessage:
		m.PublicMessage = new(PublicMessage)
		m.PublicMessage.read(r)
	case WirePrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		m.PrivateMessage.read(r)
	case WireWelcome:
		m.Welcome = new(Welcome)
		m.Welcome.read(r)
	case WireGroupInfo:
		m.GroupInfo = new(GroupInfo)
		m.GroupInfo.read(r)
	case WireKeyPackage:
		m.KeyPackage = new(KeyPackage)
		m.KeyPackage.read(r)
	default:
		invalid(r, "wire format %d", m.WireFormat)
	}
}

// DecodeMLSMessage decodes an MLSMessage.
func DecodeMLSMessage(b []byte) (*MLSMessage, error) {
	m := new(MLSMessage)
	return m, decode("mls message", b, m.read)
}

// ReadGroupContext reads a GroupContext from r, for enclosing formats
// defined elsewhere (such as stored group state).
func ReadGroupContext(r *tlscodec.Reader) (*GroupContext, error) {
	g := new(GroupContext)
	g.read(r)
	return g, r.Err()
}

// ReadSenderProposal reads a Sender followed by a Proposal from r.
func ReadSenderProposal(r *tlscodec.Reader) (Sender, *Proposal, error) {
	var s Sender
	s.read(r)
	p := new(Proposal)
	p.read(r)
	return s, p, r.Err()
}

// ReadReInit reads the body of a ReInit proposal from r.
func ReadReInit(r *tlscodec.Reader) (*ReInit, error) {
	p := &Proposal{Type: ProposalReInit}
	p.readBody(r)
	return p.ReInit, r.Err()
}
