// Package suite implements the seven MLS cipher suites of RFC 9420, the
// post-quantum X-Wing suite 0x004D, and the labeled
// primitives built on them ([RFC 9420, Section 5]): ExpandWithLabel,
// DeriveSecret, DeriveTreeSecret, RefHash, SignWithLabel/VerifyWithLabel and
// EncryptWithLabel/DecryptWithLabel.
//
// HPKE (X-Wing included), AES-GCM, HKDF, Ed25519 and ECDSA come from the
// standard library;
// X448 HPKE, Ed448 and the ChaCha20-Poly1305 AEAD come from circl, which the
// standard library does not expose.
//
// [RFC 9420, Section 5]: https://www.rfc-editor.org/rfc/rfc9420#section-5
package suite

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	circlhpke "github.com/cloudflare/circl/hpke"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
)

// ID is a cipher suite number from the IANA MLS registry.
type ID uint16

// The cipher suites of RFC 9420, Section 17.1.
const (
	X25519AES128GCMSHA256Ed25519        ID = 1
	P256AES128GCMSHA256P256             ID = 2
	X25519ChaCha20Poly1305SHA256Ed25519 ID = 3
	X448AES256GCMSHA512Ed448            ID = 4
	P521AES256GCMSHA512P521             ID = 5
	X448ChaCha20Poly1305SHA512Ed448     ID = 6
	P384AES256GCMSHA384P384             ID = 7
)

// XWingChaCha20Poly1305SHA256Ed25519 is MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519
// as OpenMLS defines it: the X-Wing hybrid KEM (ML-KEM-768 + X25519,
// draft-connolly-cfrg-xwing-kem-06, which draft-ietf-hpke-pq registers as
// HPKE KEM 0x647A, MLKEM768-X25519) with HKDF-SHA256, ChaCha20-Poly1305,
// SHA-256 and Ed25519. 0x004D is not registered in the IANA MLS Cipher
// Suites registry (RFC 9420, Section 17.1): it is the unassigned value
// OpenMLS chose, so a registration may give the suite another number.
const XWingChaCha20Poly1305SHA256Ed25519 ID = 0x004D

// Supported lists every suite New accepts, in ascending order.
func Supported() []ID {
	return []ID{1, 2, 3, 4, 5, 6, 7, XWingChaCha20Poly1305SHA256Ed25519}
}

// labelPrefix is prepended to every label of the labeled primitives.
const labelPrefix = "MLS 1.0 "

// Errors returned (wrapped) by this package. Test for them with errors.Is.
var (
	// ErrUnsupportedSuite means a cipher suite number outside 1..7 and
	// 0x004D.
	ErrUnsupportedSuite = errors.New("mls: unsupported cipher suite")
	// ErrBadSignature means a signature did not verify.
	ErrBadSignature = errors.New("mls: invalid signature")
	// ErrBadKey means a public or private key could not be parsed.
	ErrBadKey = errors.New("mls: malformed key")
	// ErrDecrypt means an AEAD or HPKE ciphertext did not authenticate.
	ErrDecrypt = errors.New("mls: decryption failed")
)

// Suite is one MLS cipher suite. It is immutable and safe for concurrent use.
type Suite struct {
	id      ID
	hash    crypto.Hash
	newHash func() hash.Hash
	newAEAD func(key []byte) (cipher.AEAD, error)
	keySize int
	kem     kem
	sig     signer
}

// New returns the cipher suite with the given number.
func New(id ID) (*Suite, error) {
	s := &Suite{id: id}
	var err error
	switch id {
	case X25519AES128GCMSHA256Ed25519, X25519ChaCha20Poly1305SHA256Ed25519:
		s.hash, s.newHash, s.sig = crypto.SHA256, sha256.New, ed25519Signer{}
		s.kem, err = newStdKEM(hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), 32)
	case XWingChaCha20Poly1305SHA256Ed25519:
		// The private key is X-Wing's 32-byte seed; DeriveKeyPair is
		// SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 32) with the
		// suite id of KEM 0x647A (draft-ietf-hpke-pq), as in hpke-rs, the
		// HPKE library under OpenMLS.
		s.hash, s.newHash, s.sig = crypto.SHA256, sha256.New, ed25519Signer{}
		s.kem, err = newStdKEM(hpke.MLKEM768X25519(), hpke.HKDFSHA256(), 32)
	case P256AES128GCMSHA256P256:
		s.hash, s.newHash, s.sig = crypto.SHA256, sha256.New, newECDSASigner(256)
		s.kem, err = newStdKEM(hpke.DHKEM(ecdh.P256()), hpke.HKDFSHA256(), 32)
	case X448AES256GCMSHA512Ed448, X448ChaCha20Poly1305SHA512Ed448:
		s.hash, s.newHash, s.sig = crypto.SHA512, sha512.New, ed448Signer{}
		s.kem = &x448KEM{}
	case P521AES256GCMSHA512P521:
		s.hash, s.newHash, s.sig = crypto.SHA512, sha512.New, newECDSASigner(521)
		s.kem, err = newStdKEM(hpke.DHKEM(ecdh.P521()), hpke.HKDFSHA512(), 66)
	case P384AES256GCMSHA384P384:
		s.hash, s.newHash, s.sig = crypto.SHA384, sha512.New384, newECDSASigner(384)
		s.kem, err = newStdKEM(hpke.DHKEM(ecdh.P384()), hpke.HKDFSHA384(), 48)
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedSuite, id)
	}
	if err != nil {
		return nil, err
	}
	var aeadID uint16
	switch id {
	case X25519AES128GCMSHA256Ed25519, P256AES128GCMSHA256P256:
		s.keySize, aeadID = 16, 1
		s.newAEAD = newGCM
	case X448AES256GCMSHA512Ed448, P521AES256GCMSHA512P521, P384AES256GCMSHA384P384:
		s.keySize, aeadID = 32, 2
		s.newAEAD = newGCM
	default: // suites 3, 6 and 0x004D
		s.keySize, aeadID = 32, 3
		s.newAEAD = circlhpke.AEAD_ChaCha20Poly1305.New
	}
	if err := s.kem.setAEAD(aeadID); err != nil {
		return nil, err
	}
	return s, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ID returns the suite number.
func (s *Suite) ID() ID { return s.id }

// HashSize is Nh, the output size of the suite's hash and KDF.
func (s *Suite) HashSize() int { return s.hash.Size() }

// KeySize is Nk, the AEAD key size.
func (s *Suite) KeySize() int { return s.keySize }

// NonceSize is Nn, the AEAD nonce size (12 for every suite).
func (s *Suite) NonceSize() int { return 12 }

// Hash returns the suite hash of data.
func (s *Suite) Hash(data []byte) []byte {
	h := s.newHash()
	h.Write(data)
	return h.Sum(nil)
}

// MAC returns HMAC(key, data) with the suite hash.
func (s *Suite) MAC(key, data []byte) []byte {
	m := hmac.New(s.newHash, key)
	m.Write(data)
	return m.Sum(nil)
}

// Extract is HKDF-Extract(salt, ikm).
func (s *Suite) Extract(salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(s.newHash, ikm, salt)
	if err != nil {
		// HKDF-Extract has no failure mode for these hashes.
		panic("mls: hkdf extract: " + err.Error())
	}
	return prk
}

// Expand is HKDF-Expand(prk, info, length). length must be at most 255*Nh,
// which every MLS use satisfies.
func (s *Suite) Expand(prk, info []byte, length int) []byte {
	out, err := hkdf.Expand(s.newHash, prk, string(info), length)
	if err != nil {
		panic("mls: hkdf expand: " + err.Error())
	}
	return out
}

// ExpandWithLabel is ExpandWithLabel(secret, label, context, length).
func (s *Suite) ExpandWithLabel(secret []byte, label string, context []byte, length int) []byte {
	w := tlscodec.NewWriter(make([]byte, 0, 2+1+len(labelPrefix)+len(label)+2+len(context)))
	w.Uint16(uint16(length))
	w.Opaque(append([]byte(labelPrefix), label...))
	w.Opaque(context)
	return s.Expand(secret, w.Bytes(), length)
}

// DeriveSecret is DeriveSecret(secret, label).
func (s *Suite) DeriveSecret(secret []byte, label string) []byte {
	return s.ExpandWithLabel(secret, label, nil, s.HashSize())
}

// DeriveTreeSecret is DeriveTreeSecret(secret, label, generation, length).
func (s *Suite) DeriveTreeSecret(secret []byte, label string, generation uint32, length int) []byte {
	g := []byte{byte(generation >> 24), byte(generation >> 16), byte(generation >> 8), byte(generation)}
	return s.ExpandWithLabel(secret, label, g, length)
}

// RefHash is RefHash(label, value); label is used as given.
func (s *Suite) RefHash(label string, value []byte) []byte {
	w := tlscodec.NewWriter(nil)
	w.Opaque([]byte(label))
	w.Opaque(value)
	return s.Hash(w.Bytes())
}

// Seal encrypts with the suite AEAD.
func (s *Suite) Seal(key, nonce, aad, plaintext []byte) ([]byte, error) {
	a, err := s.aead(key, nonce)
	if err != nil {
		return nil, err
	}
	return a.Seal(nil, nonce, plaintext, aad), nil
}

// Open decrypts with the suite AEAD; a ciphertext that does not
// authenticate returns ErrDecrypt.
func (s *Suite) Open(key, nonce, aad, ciphertext []byte) ([]byte, error) {
	a, err := s.aead(key, nonce)
	if err != nil {
		return nil, err
	}
	pt, err := a.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

func (s *Suite) aead(key, nonce []byte) (cipher.AEAD, error) {
	if len(key) != s.keySize || len(nonce) != s.NonceSize() {
		return nil, fmt.Errorf("%w: aead key %d bytes, nonce %d bytes", ErrBadKey, len(key), len(nonce))
	}
	return s.newAEAD(key)
}

func labeled(label string, content []byte) []byte {
	w := tlscodec.NewWriter(make([]byte, 0, 2+len(labelPrefix)+len(label)+4+len(content)))
	w.Opaque(append([]byte(labelPrefix), label...))
	w.Opaque(content)
	return w.Bytes()
}

// SignWithLabel signs SignContent{label, content} with the private signature
// key priv (its serialized form: an EdDSA seed or an ECDSA scalar).
func (s *Suite) SignWithLabel(priv []byte, label string, content []byte) ([]byte, error) {
	return s.sig.sign(priv, labeled(label, content))
}

// VerifyWithLabel verifies a SignWithLabel signature; failure returns
// ErrBadSignature.
func (s *Suite) VerifyWithLabel(pub []byte, label string, content, signature []byte) error {
	return s.sig.verify(pub, labeled(label, content), signature)
}

// SignaturePublicKey returns the public key of a serialized private
// signature key.
func (s *Suite) SignaturePublicKey(priv []byte) ([]byte, error) {
	return s.sig.public(priv)
}

// GenerateSignatureKey returns a fresh signature key pair.
func (s *Suite) GenerateSignatureKey() (priv, pub []byte, err error) {
	return s.sig.generate()
}

// DeriveKeyPair is the HPKE DeriveKeyPair(ikm); it returns the serialized
// private and public keys.
func (s *Suite) DeriveKeyPair(ikm []byte) (priv, pub []byte, err error) {
	return s.kem.deriveKeyPair(ikm)
}

// HPKEPublicKey returns the public key of a serialized HPKE private key.
func (s *Suite) HPKEPublicKey(priv []byte) ([]byte, error) {
	return s.kem.public(priv)
}

// EncryptWithLabel is EncryptWithLabel(pub, label, context, plaintext): HPKE
// base-mode single-shot encryption with info EncryptContext{label, context}.
func (s *Suite) EncryptWithLabel(pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	return s.kem.seal(pub, labeled(label, context), plaintext)
}

// DecryptWithLabel reverses EncryptWithLabel.
func (s *Suite) DecryptWithLabel(priv []byte, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	return s.kem.open(priv, kemOutput, labeled(label, context), ciphertext)
}

// ExportSender sets up an HPKE base-mode sender to pub with empty info and
// returns its encapsulation and Export(exporterContext, length). External
// commits use it to derive the new init_secret (RFC 9420, Section 8.3).
func (s *Suite) ExportSender(pub []byte, exporterContext string, length int) (kemOutput, secret []byte, err error) {
	return s.kem.exportSender(pub, exporterContext, length)
}

// ExportReceiver is the receiving side of ExportSender.
func (s *Suite) ExportReceiver(priv, kemOutput []byte, exporterContext string, length int) ([]byte, error) {
	return s.kem.exportReceiver(priv, kemOutput, exporterContext, length)
}
