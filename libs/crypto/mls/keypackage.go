package mls

import (
	"errors"
	"fmt"
	"slices"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// CipherSuite is an MLS cipher suite number (RFC 9420, Section 17.1).
type CipherSuite uint16

// The seven cipher suites of RFC 9420 and the post-quantum X-Wing suite.
const (
	X25519AES128GCMSHA256Ed25519        CipherSuite = 1
	P256AES128GCMSHA256P256             CipherSuite = 2
	X25519ChaCha20Poly1305SHA256Ed25519 CipherSuite = 3
	X448AES256GCMSHA512Ed448            CipherSuite = 4
	P521AES256GCMSHA512P521             CipherSuite = 5
	X448ChaCha20Poly1305SHA512Ed448     CipherSuite = 6
	P384AES256GCMSHA384P384             CipherSuite = 7
	// XWingChaCha20Poly1305SHA256Ed25519 is OpenMLS's
	// MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519: the X-Wing hybrid KEM
	// (ML-KEM-768 and X25519; HPKE KEM 0x647A) with ChaCha20-Poly1305,
	// SHA-256 and Ed25519. Its group secrets resist a quantum attacker
	// who records the group's traffic today (harvest now, decrypt later);
	// its signatures are classical Ed25519, so authentication does not.
	// 0x004D is not an IANA-registered value (docs/crypto/mls.md).
	XWingChaCha20Poly1305SHA256Ed25519 CipherSuite = 0x004D
)

// DefaultCipherSuite is the suite Guardyn creates new groups in: the
// post-quantum X-Wing suite. The classical suites remain for interop.
const DefaultCipherSuite = XWingChaCha20Poly1305SHA256Ed25519

// CipherSuites lists every cipher suite this package implements.
func CipherSuites() []CipherSuite {
	ids := suite.Supported()
	out := make([]CipherSuite, len(ids))
	for i, id := range ids {
		out[i] = CipherSuite(id)
	}
	return out
}

// Errors of the group layer, returned wrapped. Test for them with errors.Is.
var (
	// ErrInvalidKeyPackage means a KeyPackage failed validation (RFC 9420,
	// Section 10.1).
	ErrInvalidKeyPackage = errors.New("mls: invalid key package")
	// ErrInvalidLeafNode means a LeafNode failed validation (Section 7.3).
	ErrInvalidLeafNode = errors.New("mls: invalid leaf node")
)

// keyPackageLabel is the SignWithLabel label of KeyPackageTBS.
const keyPackageLabel = "KeyPackageTBS"

// Identity is a client's long-term signature key and basic credential in
// one cipher suite. It is incomparable and holds a secret.
type Identity struct {
	_          [0]func()
	suite      *suite.Suite
	sigPriv    []byte
	sigPub     []byte
	credential wire.Credential
}

// NewIdentity creates a fresh signature key for name in cipher suite cs.
func NewIdentity(cs CipherSuite, name []byte) (*Identity, error) {
	s, err := suite.New(suite.ID(cs))
	if err != nil {
		return nil, err
	}
	priv, pub, err := s.GenerateSignatureKey()
	if err != nil {
		return nil, fmt.Errorf("generate signature key: %w", err)
	}
	return &Identity{suite: s, sigPriv: priv, sigPub: pub, credential: wire.Credential{Type: wire.CredentialBasic, Identity: name}}, nil
}

// IdentityFromKey rebuilds an identity from a serialized private signature
// key (an EdDSA seed or an ECDSA scalar).
func IdentityFromKey(cs CipherSuite, name, sigPriv []byte) (*Identity, error) {
	s, err := suite.New(suite.ID(cs))
	if err != nil {
		return nil, err
	}
	pub, err := s.SignaturePublicKey(sigPriv)
	if err != nil {
		return nil, err
	}
	return &Identity{suite: s, sigPriv: append([]byte{}, sigPriv...), sigPub: pub, credential: wire.Credential{Type: wire.CredentialBasic, Identity: name}}, nil
}

// defaultCapabilities advertises everything this package implements.
func defaultCapabilities(cs uint16) wire.Capabilities {
	return wire.Capabilities{
		Versions:     []uint16{wire.ProtocolVersion10},
		CipherSuites: []uint16{cs},
		Credentials:  []uint16{wire.CredentialBasic},
	}
}

// KeyPackage is a published KeyPackage together with the private keys its
// owner needs to join from a Welcome. Only the owner holds one; others see
// the bytes from Bytes.
type KeyPackage struct {
	_        [0]func()
	kp       wire.KeyPackage
	initPriv []byte
	encPriv  []byte
	identity *Identity
}

// NewKeyPackage creates a KeyPackage for id with fresh init and encryption
// keys, valid from notBefore to notAfter (seconds since the Unix epoch).
func (id *Identity) NewKeyPackage(notBefore, notAfter uint64) (*KeyPackage, error) {
	s := id.suite
	initPriv, initPub, err := freshHPKEKey(s)
	if err != nil {
		return nil, err
	}
	encPriv, encPub, err := freshHPKEKey(s)
	if err != nil {
		return nil, err
	}
	leaf := wire.LeafNode{
		EncryptionKey: encPub, SignatureKey: id.sigPub, Credential: id.credential,
		Capabilities: defaultCapabilities(uint16(s.ID())), Source: wire.SourceKeyPackage,
		NotBefore: notBefore, NotAfter: notAfter,
	}
	if err := tree.SignLeaf(s, &leaf, id.sigPriv, nil, 0); err != nil {
		return nil, err
	}
	kp := wire.KeyPackage{Version: wire.ProtocolVersion10, CipherSuite: uint16(s.ID()), InitKey: initPub, LeafNode: leaf}
	if kp.Signature, err = s.SignWithLabel(id.sigPriv, keyPackageLabel, kp.TBS()); err != nil {
		return nil, fmt.Errorf("sign key package: %w", err)
	}
	return &KeyPackage{kp: kp, initPriv: initPriv, encPriv: encPriv, identity: id}, nil
}

// Bytes returns the KeyPackage as an MLSMessage, ready to publish.
func (k *KeyPackage) Bytes() []byte {
	return wire.Encode(&wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wire.WireKeyPackage, KeyPackage: &k.kp})
}

// freshHPKEKey derives an HPKE key pair from fresh randomness, because
// DeriveKeyPair is the one key generation every suite exposes here.
func freshHPKEKey(s *suite.Suite) (priv, pub []byte, err error) {
	ikm, err := randomBytes(s.HashSize())
	if err != nil {
		return nil, nil, err
	}
	defer clear(ikm)
	return s.DeriveKeyPair(ikm)
}

// parseKeyPackage decodes an MLSMessage(KeyPackage) and validates it for
// cipher suite s (RFC 9420, Section 10.1).
func parseKeyPackage(s *suite.Suite, b []byte) (*wire.KeyPackage, error) {
	m, err := wire.DecodeMLSMessage(b)
	if err != nil {
		return nil, err
	}
	if m.KeyPackage == nil {
		return nil, fmt.Errorf("%w: message is not a key package", ErrInvalidKeyPackage)
	}
	return m.KeyPackage, validateKeyPackage(s, m.KeyPackage)
}

func validateKeyPackage(s *suite.Suite, kp *wire.KeyPackage) error {
	if kp.Version != wire.ProtocolVersion10 || kp.CipherSuite != uint16(s.ID()) {
		return fmt.Errorf("%w: version %d suite %d", ErrInvalidKeyPackage, kp.Version, kp.CipherSuite)
	}
	if err := s.VerifyWithLabel(kp.LeafNode.SignatureKey, keyPackageLabel, kp.TBS(), kp.Signature); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	if kp.LeafNode.Source != wire.SourceKeyPackage {
		return fmt.Errorf("%w: leaf source %d", ErrInvalidKeyPackage, kp.LeafNode.Source)
	}
	if string(kp.InitKey) == string(kp.LeafNode.EncryptionKey) {
		return fmt.Errorf("%w: init key equals encryption key", ErrInvalidKeyPackage)
	}
	if err := tree.VerifyLeafSignature(s, &kp.LeafNode, nil, 0); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	// Its own extensions, like its leaf's, must be listed in the leaf's
	// capabilities (Section 10).
	for _, e := range kp.Extensions {
		if mustBeListed(e.Type) && !slices.Contains(kp.LeafNode.Capabilities.Extensions, e.Type) {
			return fmt.Errorf("%w: carries extension type %d its capabilities omit", ErrInvalidKeyPackage, e.Type)
		}
	}
	return nil
}

// keyPackageRef is MakeKeyPackageRef of an encoded KeyPackage.
func keyPackageRef(s *suite.Suite, kp *wire.KeyPackage) []byte {
	return s.RefHash("MLS 1.0 KeyPackage Reference", wire.Encode(kp))
}

// SignaturePrivateKey returns a copy of the serialized private signature
// key, for storage (IdentityFromKey restores it).
func (id *Identity) SignaturePrivateKey() []byte { return slices.Clone(id.sigPriv) }

// SignaturePublicKey returns the public signature key.
func (id *Identity) SignaturePublicKey() []byte { return slices.Clone(id.sigPub) }

// PrivateKeys returns copies of the HPKE init and encryption private keys,
// for storage until the KeyPackage is used (RestoreKeyPackage restores it).
func (k *KeyPackage) PrivateKeys() (initPriv, encPriv []byte) {
	return slices.Clone(k.initPriv), slices.Clone(k.encPriv)
}
