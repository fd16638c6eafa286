// Package wire holds the MLS message structures and their TLS encodings
// ([RFC 9420, Sections 6, 7, 10, 11 and 12]): GroupContext, credentials,
// LeafNode, KeyPackage, the ratchet tree nodes, UpdatePath, proposals,
// Commit, the framing (PublicMessage, PrivateMessage and their signed and
// MACed inputs), GroupInfo, GroupSecrets, Welcome and MLSMessage.
//
// Each type encodes with Marshal and decodes with a Decode function that
// rejects trailing bytes, unknown enum values where the RFC fixes the set,
// and lengths beyond the input. Decoded byte slices alias the input.
//
// [RFC 9420, Sections 6, 7, 10, 11 and 12]: https://www.rfc-editor.org/rfc/rfc9420#section-6
package wire

import (
	"errors"
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
)

// ErrMalformed wraps every decoding failure; tlscodec's errors are wrapped
// beneath it for detail.
var ErrMalformed = errors.New("mls: malformed message")

// maxList bounds the element count of any decoded vector. Each element takes
// at least one byte, so the input length bounds it too; this bound keeps a
// decoder from building millions of tiny structs out of one large message.
const maxList = 1 << 16

// ProtocolVersion mls10 is the only version.
const ProtocolVersion10 uint16 = 1

// ContentType of framed content.
type ContentType uint8

// Content types.
const (
	ContentApplication ContentType = 1
	ContentProposal    ContentType = 2
	ContentCommit      ContentType = 3
)

// WireFormat of an MLSMessage.
type WireFormat uint16

// Wire formats.
const (
	WirePublicMessage  WireFormat = 1
	WirePrivateMessage WireFormat = 2
	WireWelcome        WireFormat = 3
	WireGroupInfo      WireFormat = 4
	WireKeyPackage     WireFormat = 5
)

// Marshaler is any structure with a TLS encoding.
type Marshaler interface {
	Marshal(w *tlscodec.Writer)
}

// Encode returns the TLS encoding of m.
func Encode(m Marshaler) []byte {
	w := tlscodec.NewWriter(nil)
	m.Marshal(w)
	return w.Bytes()
}

// decode runs read over all of b and wraps any failure with ErrMalformed.
func decode(what string, b []byte, read func(*tlscodec.Reader)) error {
	r := tlscodec.NewReader(b)
	read(r)
	if err := r.Finish(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return nil
}

func invalid(r *tlscodec.Reader, format string, args ...any) {
	r.Fail(fmt.Errorf("%w: "+format, append([]any{tlscodec.ErrInvalid}, args...)...))
}

// Extension is an MLS extension: a type and opaque data.
type Extension struct {
	Type uint16
	Data []byte
}

// Standard extension types (RFC 9420, Section 17.3).
const (
	ExtApplicationID        uint16 = 1
	ExtRatchetTree          uint16 = 2
	ExtRequiredCapabilities uint16 = 3
	ExtExternalPub          uint16 = 4
	ExtExternalSenders      uint16 = 5
)

func writeExtensions(w *tlscodec.Writer, exts []Extension) {
	w.Vector(func(w *tlscodec.Writer) {
		for _, e := range exts {
			w.Uint16(e.Type)
			w.Opaque(e.Data)
		}
	})
}

func readExtensions(r *tlscodec.Reader) []Extension {
	var exts []Extension
	r.Each(maxList, func(r *tlscodec.Reader) {
		exts = append(exts, Extension{Type: r.Uint16(), Data: r.Opaque()})
	})
	return exts
}

// FindExtension returns the data of the first extension of type t.
func FindExtension(exts []Extension, t uint16) ([]byte, bool) {
	for _, e := range exts {
		if e.Type == t {
			return e.Data, true
		}
	}
	return nil, false
}

func writeUint16s(w *tlscodec.Writer, vs []uint16) {
	w.Vector(func(w *tlscodec.Writer) {
		for _, v := range vs {
			w.Uint16(v)
		}
	})
}

func readUint16s(r *tlscodec.Reader) []uint16 {
	var vs []uint16
	r.Each(maxList, func(r *tlscodec.Reader) { vs = append(vs, r.Uint16()) })
	return vs
}

// GroupContext is the shared state of an epoch (RFC 9420, Section 8.1).
type GroupContext struct {
	Version                 uint16
	CipherSuite             uint16
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              []Extension
}

// Marshal encodes g.
func (g *GroupContext) Marshal(w *tlscodec.Writer) {
	w.Uint16(g.Version)
	w.Uint16(g.CipherSuite)
	w.Opaque(g.GroupID)
	w.Uint64(g.Epoch)
	w.Opaque(g.TreeHash)
	w.Opaque(g.ConfirmedTranscriptHash)
	writeExtensions(w, g.Extensions)
}

func (g *GroupContext) read(r *tlscodec.Reader) {
	g.Version = r.Uint16()
	g.CipherSuite = r.Uint16()
	g.GroupID = r.Opaque()
	g.Epoch = r.Uint64()
	g.TreeHash = r.Opaque()
	g.ConfirmedTranscriptHash = r.Opaque()
	g.Extensions = readExtensions(r)
}

// DecodeGroupContext decodes a GroupContext.
func DecodeGroupContext(b []byte) (*GroupContext, error) {
	g := new(GroupContext)
	return g, decode("group context", b, g.read)
}

// PSKType of a PreSharedKeyID.
type PSKType uint8

// PSK types.
const (
	PSKExternal   PSKType = 1
	PSKResumption PSKType = 2
)

// ResumptionPSKUsage says why a resumption PSK is used.
type ResumptionPSKUsage uint8

// Resumption PSK usages.
const (
	ResumptionApplication ResumptionPSKUsage = 1
	ResumptionReInit      ResumptionPSKUsage = 2
	ResumptionBranch      ResumptionPSKUsage = 3
)

// PreSharedKeyID names a PSK (RFC 9420, Section 8.4).
type PreSharedKeyID struct {
	Type PSKType
	// External PSKs.
	PSKID []byte
	// Resumption PSKs.
	Usage      ResumptionPSKUsage
	PSKGroupID []byte
	PSKEpoch   uint64

	Nonce []byte
}

// Marshal encodes p.
func (p *PreSharedKeyID) Marshal(w *tlscodec.Writer) {
	w.Uint8(uint8(p.Type))
	switch p.Type {
	case PSKExternal:
		w.Opaque(p.PSKID)
	case PSKResumption:
		w.Uint8(uint8(p.Usage))
		w.Opaque(p.PSKGroupID)
		w.Uint64(p.PSKEpoch)
	}
	w.Opaque(p.Nonce)
}

func (p *PreSharedKeyID) read(r *tlscodec.Reader) {
	p.Type = PSKType(r.Uint8())
	switch p.Type {
	case PSKExternal:
		p.PSKID = r.Opaque()
	case PSKResumption:
		p.Usage = ResumptionPSKUsage(r.Uint8())
		if p.Usage < ResumptionApplication || p.Usage > ResumptionBranch {
			invalid(r, "resumption psk usage %d", p.Usage)
		}
		p.PSKGroupID = r.Opaque()
		p.PSKEpoch = r.Uint64()
	default:
		invalid(r, "psk type %d", p.Type)
	}
	p.Nonce = r.Opaque()
}

// Credential types.
const (
	CredentialBasic uint16 = 1
	CredentialX509  uint16 = 2
)

// Credential binds a member's identity (RFC 9420, Section 5.3). Only the
// basic and X.509 types are decodable: other types have no length prefix, so
// their bodies cannot be skipped.
type Credential struct {
	Type         uint16
	Identity     []byte   // basic
	Certificates [][]byte // x509
}

// Marshal encodes c.
func (c *Credential) Marshal(w *tlscodec.Writer) {
	w.Uint16(c.Type)
	switch c.Type {
	case CredentialBasic:
		w.Opaque(c.Identity)
	case CredentialX509:
		w.Vector(func(w *tlscodec.Writer) {
			for _, cert := range c.Certificates {
				w.Opaque(cert)
			}
		})
	}
}

func (c *Credential) read(r *tlscodec.Reader) {
	c.Type = r.Uint16()
	switch c.Type {
	case CredentialBasic:
		c.Identity = r.Opaque()
	case CredentialX509:
		r.Each(maxList, func(r *tlscodec.Reader) { c.Certificates = append(c.Certificates, r.Opaque()) })
	default:
		invalid(r, "credential type %d", c.Type)
	}
}

// ReadCredential reads one Credential from r, for structures defined
// outside this package (such as the external_senders extension).
func ReadCredential(r *tlscodec.Reader) (Credential, error) {
	var c Credential
	c.read(r)
	return c, r.Err()
}

// Capabilities lists what a client supports (RFC 9420, Section 7.2).
type Capabilities struct {
	Versions     []uint16
	CipherSuites []uint16
	Extensions   []uint16
	Proposals    []uint16
	Credentials  []uint16
}

// Marshal encodes c.
func (c *Capabilities) Marshal(w *tlscodec.Writer) {
	writeUint16s(w, c.Versions)
	writeUint16s(w, c.CipherSuites)
	writeUint16s(w, c.Extensions)
	writeUint16s(w, c.Proposals)
	writeUint16s(w, c.Credentials)
}

func (c *Capabilities) read(r *tlscodec.Reader) {
	c.Versions = readUint16s(r)
	c.CipherSuites = readUint16s(r)
	c.Extensions = readUint16s(r)
	c.Proposals = readUint16s(r)
	c.Credentials = readUint16s(r)
}

// LeafNodeSource says where a LeafNode was made.
type LeafNodeSource uint8

// Leaf node sources.
const (
	SourceKeyPackage LeafNodeSource = 1
	SourceUpdate     LeafNodeSource = 2
	SourceCommit     LeafNodeSource = 3
)

// LeafNode is a member's leaf in the ratchet tree (RFC 9420, Section 7.2).
type LeafNode struct {
	EncryptionKey []byte
	SignatureKey  []byte
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	NotBefore     uint64 // key_package source
	NotAfter      uint64 // key_package source
	ParentHash    []byte // commit source
	Extensions    []Extension
	Signature     []byte
}

func (l *LeafNode) marshalContent(w *tlscodec.Writer) {
	w.Opaque(l.EncryptionKey)
	w.Opaque(l.SignatureKey)
	l.Credential.Marshal(w)
	l.Capabilities.Marshal(w)
	w.Uint8(uint8(l.Source))
	switch l.Source {
	case SourceKeyPackage:
		w.Uint64(l.NotBefore)
		w.Uint64(l.NotAfter)
	case SourceCommit:
		w.Opaque(l.ParentHash)
	}
	writeExtensions(w, l.Extensions)
}

// Marshal encodes l.
func (l *LeafNode) Marshal(w *tlscodec.Writer) {
	l.marshalContent(w)
	w.Opaque(l.Signature)
}

// TBS returns LeafNodeTBS, the signed part of l. groupID and leafIndex are
// used for the update and commit sources only.
func (l *LeafNode) TBS(groupID []byte, leafIndex uint32) []byte {
	w := tlscodec.NewWriter(nil)
	l.marshalContent(w)
	if l.Source == SourceUpdate || l.Source == SourceCommit {
		w.Opaque(groupID)
		w.Uint32(leafIndex)
	}
	return w.Bytes()
}

func (l *LeafNode) read(r *tlscodec.Reader) {
	l.EncryptionKey = r.Opaque()
	l.SignatureKey = r.Opaque()
	l.Credential.read(r)
	l.Capabilities.read(r)
	l.Source = LeafNodeSource(r.Uint8())
	switch l.Source {
	case SourceKeyPackage:
		l.NotBefore = r.Uint64()
		l.NotAfter = r.Uint64()
	case SourceUpdate:
	case SourceCommit:
		l.ParentHash = r.Opaque()
	default:
		invalid(r, "leaf node source %d", l.Source)
	}
	l.Extensions = readExtensions(r)
	l.Signature = r.Opaque()
}

// DecodeLeafNode decodes a LeafNode.
func DecodeLeafNode(b []byte) (*LeafNode, error) {
	l := new(LeafNode)
	return l, decode("leaf node", b, l.read)
}

// KeyPackage advertises a client that can be added to groups (RFC 9420,
// Section 10).
type KeyPackage struct {
	Version     uint16
	CipherSuite uint16
	InitKey     []byte
	LeafNode    LeafNode
	Extensions  []Extension
	Signature   []byte
}

func (k *KeyPackage) marshalContent(w *tlscodec.Writer) {
	w.Uint16(k.Version)
	w.Uint16(k.CipherSuite)
	w.Opaque(k.InitKey)
	k.LeafNode.Marshal(w)
	writeExtensions(w, k.Extensions)
}

// Marshal encodes k.
func (k *KeyPackage) Marshal(w *tlscodec.Writer) {
	k.marshalContent(w)
	w.Opaque(k.Signature)
}

// TBS returns KeyPackageTBS, the signed part of k.
func (k *KeyPackage) TBS() []byte {
	w := tlscodec.NewWriter(nil)
	k.marshalContent(w)
	return w.Bytes()
}

func (k *KeyPackage) read(r *tlscodec.Reader) {
	k.Version = r.Uint16()
	k.CipherSuite = r.Uint16()
	k.InitKey = r.Opaque()
	k.LeafNode.read(r)
	k.Extensions = readExtensions(r)
	k.Signature = r.Opaque()
}

// DecodeKeyPackage decodes a bare KeyPackage.
func DecodeKeyPackage(b []byte) (*KeyPackage, error) {
	k := new(KeyPackage)
	return k, decode("key package", b, k.read)
}

// ParentNode is an interior node of the ratchet tree (RFC 9420, Section 7.1).
type ParentNode struct {
	EncryptionKey  []byte
	ParentHash     []byte
	UnmergedLeaves []uint32
}

// Marshal encodes p.
func (p *ParentNode) Marshal(w *tlscodec.Writer) {
	w.Opaque(p.EncryptionKey)
	w.Opaque(p.ParentHash)
	w.Vector(func(w *tlscodec.Writer) {
		for _, u := range p.UnmergedLeaves {
			w.Uint32(u)
		}
	})
}

func (p *ParentNode) read(r *tlscodec.Reader) {
	p.EncryptionKey = r.Opaque()
	p.ParentHash = r.Opaque()
	r.Each(maxList, func(r *tlscodec.Reader) { p.UnmergedLeaves = append(p.UnmergedLeaves, r.Uint32()) })
}

// Node is one entry of a ratchet tree: a leaf or a parent, never both.
type Node struct {
	Leaf   *LeafNode
	Parent *ParentNode
}

// Node types.
const (
	nodeTypeLeaf   = 1
	nodeTypeParent = 2
)

// Marshal encodes n as a Node.
func (n *Node) Marshal(w *tlscodec.Writer) {
	if n.Leaf != nil {
		w.Uint8(nodeTypeLeaf)
		n.Leaf.Marshal(w)
		return
	}
	w.Uint8(nodeTypeParent)
	n.Parent.Marshal(w)
}

func (n *Node) read(r *tlscodec.Reader) {
	switch t := r.Uint8(); t {
	case nodeTypeLeaf:
		n.Leaf = new(LeafNode)
		n.Leaf.read(r)
	case nodeTypeParent:
		n.Parent = new(ParentNode)
		n.Parent.read(r)
	default:
		invalid(r, "node type %d", t)
	}
}

// RatchetTree is the wire form of a tree: optional<Node> per node index,
// nil for a blank node.
type RatchetTree []*Node

// Marshal encodes t.
func (t RatchetTree) Marshal(w *tlscodec.Writer) {
	w.Vector(func(w *tlscodec.Writer) {
		for _, n := range t {
			if n == nil {
				w.Uint8(0)
				continue
			}
			w.Uint8(1)
			n.Marshal(w)
		}
	})
}

func (t *RatchetTree) read(r *tlscodec.Reader) {
	r.Each(maxList*2, func(r *tlscodec.Reader) {
		if !r.Optional() {
			*t = append(*t, nil)
			return
		}
		n := new(Node)
		n.read(r)
		*t = append(*t, n)
	})
}

// DecodeRatchetTree decodes a ratchet_tree extension body. Its shape (leaf
// and parent positions, trailing blanks) is checked by the tree package.
func DecodeRatchetTree(b []byte) (RatchetTree, error) {
	var t RatchetTree
	return t, decode("ratchet tree", b, t.read)
}

// HPKECiphertext is an HPKE encapsulation and ciphertext.
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

// Marshal encodes c.
func (c *HPKECiphertext) Marshal(w *tlscodec.Writer) {
	w.Opaque(c.KEMOutput)
	w.Opaque(c.Ciphertext)
}

func (c *HPKECiphertext) read(r *tlscodec.Reader) {
	c.KEMOutput = r.Opaque()
	c.Ciphertext = r.Opaque()
}

// UpdatePathNode carries a new public key and its path secret encrypted to
// each node of the copath resolution.
type UpdatePathNode struct {
	EncryptionKey        []byte
	EncryptedPathSecrets []HPKECiphertext
}

// UpdatePath is the sender's new leaf and direct path (RFC 9420, Section 7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

// Marshal encodes p.
func (p *UpdatePath) Marshal(w *tlscodec.Writer) {
	p.LeafNode.Marshal(w)
	w.Vector(func(w *tlscodec.Writer) {
		for i := range p.Nodes {
			n := &p.Nodes[i]
			w.Opaque(n.EncryptionKey)
			w.Vector(func(w *tlscodec.Writer) {
				for j := range n.EncryptedPathSecrets {
					n.EncryptedPathSecrets[j].Marshal(w)
				}
			})
		}
	})
}

func (p *UpdatePath) read(r *tlscodec.Reader) {
	p.LeafNode.read(r)
	r.Each(maxList, func(r *tlscodec.Reader) {
		var n UpdatePathNode
		n.EncryptionKey = r.Opaque()
		r.Each(maxList, func(r *tlscodec.Reader) {
			var c HPKECiphertext
			c.read(r)
			n.EncryptedPathSecrets = append(n.EncryptedPathSecrets, c)
		})
		p.Nodes = append(p.Nodes, n)
	})
}

// DecodeUpdatePath decodes an UpdatePath.
func DecodeUpdatePath(b []byte) (*UpdatePath, error) {
	p := new(UpdatePath)
	return p, decode("update path", b, p.read)
}
