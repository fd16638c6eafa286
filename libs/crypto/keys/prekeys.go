package keys

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// kemTypeMLKEM768 is the one-byte KEM identifier inside a signed KEM prekey statement (the
// EncodeKEM type byte of the PQXDH spec), so a signature cannot be reinterpreted for another KEM.
const kemTypeMLKEM768 = 0x01

// signedPreKeyStatement is what the identity signs for a signed EC prekey: uint32 id || point.
func signedPreKeyStatement(id uint32, key *ecdh.PublicKey) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+PublicKeySize), id)
	return append(b, key.Bytes()...)
}

// kemPreKeyStatement is what the identity signs for an ML-KEM prekey:
// uint32 id || last-resort (0 or 1) || KEM type || encapsulation key. The flag is signed so the
// server cannot present a one-time key as a last-resort key or the reverse.
func kemPreKeyStatement(id uint32, lastResort bool, key *mlkem.EncapsulationKey768) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 6+KEMPublicKeySize), id)
	b = appendBool(b, lastResort)
	b = append(b, kemTypeMLKEM768)
	return append(b, key.Bytes()...)
}

// parseECPublicKey parses a SEC 1 uncompressed P-256 point, rejecting invalid points.
func parseECPublicKey(b []byte, what string) (*ecdh.PublicKey, error) {
	if len(b) != PublicKeySize {
		return nil, fmt.Errorf("%s of %d bytes, want %d: %w", what, len(b), PublicKeySize, ErrInvalidKey)
	}
	k, err := ecdh.P256().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrInvalidKey, err)
	}
	return k, nil
}

// parseKEMPublicKey parses an ML-KEM-768 encapsulation key, rejecting invalid encodings.
func parseKEMPublicKey(b []byte) (*mlkem.EncapsulationKey768, error) {
	if len(b) != KEMPublicKeySize {
		return nil, fmt.Errorf("kem prekey of %d bytes, want %d: %w", len(b), KEMPublicKeySize, ErrInvalidKey)
	}
	k, err := mlkem.NewEncapsulationKey768(b)
	if err != nil {
		return nil, fmt.Errorf("kem prekey: %w: %v", ErrInvalidKey, err)
	}
	return k, nil
}

// SignedPreKeyPublic is the uploaded form of a signed EC prekey (SPK in PQXDH).
type SignedPreKeyPublic struct {
	ID        uint32
	Key       *ecdh.PublicKey
	Signature []byte
}

// ParseSignedPreKeyPublic parses the fields of a signed prekey as received from the wire. It
// validates the point but not the signature: call [SignedPreKeyPublic.Verify].
func ParseSignedPreKeyPublic(id uint32, key, signature []byte) (*SignedPreKeyPublic, error) {
	k, err := parseECPublicKey(key, "signed prekey")
	if err != nil {
		return nil, err
	}
	if len(signature) == 0 || len(signature) > MaxSignatureSize {
		return nil, fmt.Errorf("signed prekey signature of %d bytes: %w", len(signature), ErrMalformed)
	}
	return &SignedPreKeyPublic{ID: id, Key: k, Signature: append([]byte(nil), signature...)}, nil
}

// Verify checks the prekey's signature under the owner's identity key.
func (p *SignedPreKeyPublic) Verify(owner *IdentityKey) error {
	if err := owner.Verify(ContextSignedPreKey, signedPreKeyStatement(p.ID, p.Key), p.Signature); err != nil {
		return fmt.Errorf("signed prekey %d: %w", p.ID, err)
	}
	return nil
}

// OneTimePreKeyPublic is the uploaded form of a one-time EC prekey (OPK in PQXDH). One-time EC
// prekeys are not signed, as in the PQXDH spec: they only add forward secrecy.
type OneTimePreKeyPublic struct {
	ID  uint32
	Key *ecdh.PublicKey
}

// ParseOneTimePreKeyPublic parses the fields of a one-time prekey as received from the wire.
func ParseOneTimePreKeyPublic(id uint32, key []byte) (*OneTimePreKeyPublic, error) {
	k, err := parseECPublicKey(key, "one-time prekey")
	if err != nil {
		return nil, err
	}
	return &OneTimePreKeyPublic{ID: id, Key: k}, nil
}

// KEMPreKeyPublic is the uploaded form of a signed ML-KEM-768 prekey (PQOPK or PQSPK in PQXDH).
// LastResort marks the key the server hands out when no one-time KEM prekey is left.
type KEMPreKeyPublic struct {
	ID         uint32
	Key        *mlkem.EncapsulationKey768
	LastResort bool
	Signature  []byte
}

// ParseKEMPreKeyPublic parses the fields of a KEM prekey as received from the wire. It validates
// the key encoding but not the signature: call [KEMPreKeyPublic.Verify].
func ParseKEMPreKeyPublic(id uint32, key []byte, lastResort bool, signature []byte) (*KEMPreKeyPublic, error) {
	k, err := parseKEMPublicKey(key)
	if err != nil {
		return nil, err
	}
	if len(signature) == 0 || len(signature) > MaxSignatureSize {
		return nil, fmt.Errorf("kem prekey signature of %d bytes: %w", len(signature), ErrMalformed)
	}
	return &KEMPreKeyPublic{ID: id, Key: k, LastResort: lastResort, Signature: append([]byte(nil), signature...)}, nil
}

// Verify checks the prekey's signature under the owner's identity key.
func (p *KEMPreKeyPublic) Verify(owner *IdentityKey) error {
	if err := owner.Verify(ContextKEMPreKey, kemPreKeyStatement(p.ID, p.LastResort, p.Key), p.Signature); err != nil {
		return fmt.Errorf("kem prekey %d: %w", p.ID, err)
	}
	return nil
}

// SignedPreKey is the private half of a signed EC prekey, kept in the [PreKeyStore].
type SignedPreKey struct {
	_         [0]func()
	id        uint32
	private   *ecdh.PrivateKey
	signature []byte
}

// GenerateSignedPreKey generates a random P-256 prekey with the given id and signs it.
func GenerateSignedPreKey(owner *Identity, id uint32) (*SignedPreKey, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signed prekey: %w", err)
	}
	return NewSignedPreKey(owner, id, priv)
}

// NewSignedPreKey signs an existing P-256 private key as signed prekey id.
func NewSignedPreKey(owner *Identity, id uint32, private *ecdh.PrivateKey) (*SignedPreKey, error) {
	if private.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("signed prekey: not a P-256 key: %w", ErrInvalidKey)
	}
	sig, err := owner.Sign(ContextSignedPreKey, signedPreKeyStatement(id, private.PublicKey()))
	if err != nil {
		return nil, fmt.Errorf("signed prekey %d: %w", id, err)
	}
	return &SignedPreKey{id: id, private: private, signature: sig}, nil
}

// ID returns the prekey id.
func (k *SignedPreKey) ID() uint32 { return k.id }

// PrivateKey returns the ECDH private key.
func (k *SignedPreKey) PrivateKey() *ecdh.PrivateKey { return k.private }

// Public returns the form to upload.
func (k *SignedPreKey) Public() *SignedPreKeyPublic {
	return &SignedPreKeyPublic{ID: k.id, Key: k.private.PublicKey(), Signature: append([]byte(nil), k.signature...)}
}

// OneTimePreKey is the private half of a one-time EC prekey, kept in the [PreKeyStore] until used.
type OneTimePreKey struct {
	_       [0]func()
	id      uint32
	private *ecdh.PrivateKey
}

// GenerateOneTimePreKey generates a random P-256 one-time prekey with the given id.
func GenerateOneTimePreKey(id uint32) (*OneTimePreKey, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate one-time prekey: %w", err)
	}
	return NewOneTimePreKey(id, priv)
}

// NewOneTimePreKey wraps an existing P-256 private key as one-time prekey id.
func NewOneTimePreKey(id uint32, private *ecdh.PrivateKey) (*OneTimePreKey, error) {
	if private.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("one-time prekey: not a P-256 key: %w", ErrInvalidKey)
	}
	return &OneTimePreKey{id: id, private: private}, nil
}

// ID returns the prekey id.
func (k *OneTimePreKey) ID() uint32 { return k.id }

// PrivateKey returns the ECDH private key.
func (k *OneTimePreKey) PrivateKey() *ecdh.PrivateKey { return k.private }

// Public returns the form to upload.
func (k *OneTimePreKey) Public() *OneTimePreKeyPublic {
	return &OneTimePreKeyPublic{ID: k.id, Key: k.private.PublicKey()}
}

// KEMPreKey is the private half of a signed ML-KEM-768 prekey, kept in the [PreKeyStore]. A
// one-time KEM prekey is forgotten once used; the last-resort one stays until replaced.
type KEMPreKey struct {
	_          [0]func()
	id         uint32
	private    *mlkem.DecapsulationKey768
	lastResort bool
	signature  []byte
}

// GenerateKEMPreKey generates a random ML-KEM-768 prekey with the given id and signs it.
func GenerateKEMPreKey(owner *Identity, id uint32, lastResort bool) (*KEMPreKey, error) {
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, fmt.Errorf("generate kem prekey: %w", err)
	}
	return NewKEMPreKey(owner, id, dk, lastResort)
}

// NewKEMPreKey signs an existing ML-KEM-768 decapsulation key as KEM prekey id.
func NewKEMPreKey(owner *Identity, id uint32, private *mlkem.DecapsulationKey768, lastResort bool) (*KEMPreKey, error) {
	sig, err := owner.Sign(ContextKEMPreKey, kemPreKeyStatement(id, lastResort, private.EncapsulationKey()))
	if err != nil {
		return nil, fmt.Errorf("kem prekey %d: %w", id, err)
	}
	return &KEMPreKey{id: id, private: private, lastResort: lastResort, signature: sig}, nil
}

// ID returns the prekey id.
func (k *KEMPreKey) ID() uint32 { return k.id }

// LastResort reports whether this is the last-resort KEM prekey.
func (k *KEMPreKey) LastResort() bool { return k.lastResort }

// PrivateKey returns the ML-KEM-768 decapsulation key.
func (k *KEMPreKey) PrivateKey() *mlkem.DecapsulationKey768 { return k.private }

// Public returns the form to upload.
func (k *KEMPreKey) Public() *KEMPreKeyPublic {
	return &KEMPreKeyPublic{
		ID:         k.id,
		Key:        k.private.EncapsulationKey(),
		LastResort: k.lastResort,
		Signature:  append([]byte(nil), k.signature...),
	}
}
