package keys

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// kemTypeMLKEM768 is the one-byte KEM identifier inside a signed KEM prekey statement (the
// EncodeKEM type byte of the PQXDH spec), so a signature cannot be reinterpreted for another KEM.
const kemTypeMLKEM768 = 0x01

// Prekey lifetime. A signed prekey and a last-resort KEM prekey serve every initiator until the
// device replaces them, so a stolen one would open every session started against it; each
// carries a signed creation time, and initiators refuse old ones ([Bundle.CheckAge]).
const (
	// MaxPreKeyAge is the oldest signed or KEM prekey an initiator accepts. Devices rotate well
	// before (the client every week), so only a device offline for weeks is affected; it becomes
	// reachable again when it next comes online and rotates.
	MaxPreKeyAge = 30 * 24 * time.Hour
	// MaxPreKeyClockSkew is how far in the future a creation time may lie (clocks disagree); a
	// later one would let a key outlive MaxPreKeyAge.
	MaxPreKeyClockSkew = 24 * time.Hour
)

// ErrPreKeyExpired reports a signed or KEM prekey whose signed creation time is older than
// MaxPreKeyAge or too far in the future.
var ErrPreKeyExpired = errors.New("keys: prekey too old or dated in the future")

// checkCreated validates a creation time as carried on the wire: whole Unix seconds after 1970.
func checkCreated(created time.Time, what string) error {
	if created.Unix() <= 0 || created.Nanosecond() != 0 {
		return fmt.Errorf("%s creation time %v: want whole seconds after 1970: %w", what, created, ErrMalformed)
	}
	return nil
}

// signedPreKeyStatement is what the identity signs for a signed EC prekey:
// uint32 id || uint64 creation time (Unix seconds) || point.
func signedPreKeyStatement(id uint32, created time.Time, key *ecdh.PublicKey) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+8+PublicKeySize), id)
	b = binary.BigEndian.AppendUint64(b, uint64(created.Unix()))
	return append(b, key.Bytes()...)
}

// kemPreKeyStatement is what the identity signs for an ML-KEM prekey:
// uint32 id || last-resort (0 or 1) || KEM type || uint64 creation time (Unix seconds) ||
// encapsulation key. The flag is signed so the server cannot present a one-time key as a
// last-resort key or the reverse.
func kemPreKeyStatement(id uint32, lastResort bool, created time.Time, key *mlkem.EncapsulationKey768) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 6+8+KEMPublicKeySize), id)
	b = appendBool(b, lastResort)
	b = append(b, kemTypeMLKEM768)
	b = binary.BigEndian.AppendUint64(b, uint64(created.Unix()))
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

// SignedPreKeyPublic is the uploaded form of a signed EC prekey (SPK in PQXDH). Created is
// the signed creation time, whole seconds.
type SignedPreKeyPublic struct {
	ID        uint32
	Created   time.Time
	Key       *ecdh.PublicKey
	Signature []byte
}

// ParseSignedPreKeyPublic parses the fields of a signed prekey as received from the wire. It
// validates the point and the creation time's form but not the signature: call
// [SignedPreKeyPublic.Verify].
func ParseSignedPreKeyPublic(id uint32, created time.Time, key, signature []byte) (*SignedPreKeyPublic, error) {
	if err := checkCreated(created, "signed prekey"); err != nil {
		return nil, err
	}
	k, err := parseECPublicKey(key, "signed prekey")
	if err != nil {
		return nil, err
	}
	if len(signature) == 0 || len(signature) > MaxSignatureSize {
		return nil, fmt.Errorf("signed prekey signature of %d bytes: %w", len(signature), ErrMalformed)
	}
	return &SignedPreKeyPublic{ID: id, Created: created, Key: k, Signature: append([]byte(nil), signature...)}, nil
}

// Verify checks the prekey's signature under the owner's identity key.
func (p *SignedPreKeyPublic) Verify(owner *IdentityKey) error {
	if err := owner.Verify(ContextSignedPreKey, signedPreKeyStatement(p.ID, p.Created, p.Key), p.Signature); err != nil {
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
// LastResort marks the key the server hands out when no one-time KEM prekey is left; Created is
// the signed creation time, whole seconds.
type KEMPreKeyPublic struct {
	ID         uint32
	Created    time.Time
	Key        *mlkem.EncapsulationKey768
	LastResort bool
	Signature  []byte
}

// ParseKEMPreKeyPublic parses the fields of a KEM prekey as received from the wire. It validates
// the key encoding and the creation time's form but not the signature: call
// [KEMPreKeyPublic.Verify].
func ParseKEMPreKeyPublic(id uint32, created time.Time, key []byte, lastResort bool, signature []byte) (*KEMPreKeyPublic, error) {
	if err := checkCreated(created, "kem prekey"); err != nil {
		return nil, err
	}
	k, err := parseKEMPublicKey(key)
	if err != nil {
		return nil, err
	}
	if len(signature) == 0 || len(signature) > MaxSignatureSize {
		return nil, fmt.Errorf("kem prekey signature of %d bytes: %w", len(signature), ErrMalformed)
	}
	return &KEMPreKeyPublic{ID: id, Created: created, Key: k, LastResort: lastResort, Signature: append([]byte(nil), signature...)}, nil
}

// Verify checks the prekey's signature under the owner's identity key.
func (p *KEMPreKeyPublic) Verify(owner *IdentityKey) error {
	if err := owner.Verify(ContextKEMPreKey, kemPreKeyStatement(p.ID, p.LastResort, p.Created, p.Key), p.Signature); err != nil {
		return fmt.Errorf("kem prekey %d: %w", p.ID, err)
	}
	return nil
}

// SignedPreKey is the private half of a signed EC prekey, kept in the [PreKeyStore].
type SignedPreKey struct {
	_         [0]func()
	id        uint32
	created   time.Time
	private   *ecdh.PrivateKey
	signature []byte
}

// GenerateSignedPreKey generates a random P-256 prekey with the given id and creation time
// (truncated to whole seconds) and signs it.
func GenerateSignedPreKey(owner *Identity, id uint32, created time.Time) (*SignedPreKey, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signed prekey: %w", err)
	}
	return NewSignedPreKey(owner, id, created, priv)
}

// NewSignedPreKey signs an existing P-256 private key as signed prekey id, created at created
// (truncated to whole seconds).
func NewSignedPreKey(owner *Identity, id uint32, created time.Time, private *ecdh.PrivateKey) (*SignedPreKey, error) {
	if private.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("signed prekey: not a P-256 key: %w", ErrInvalidKey)
	}
	created = created.Truncate(time.Second)
	if err := checkCreated(created, "signed prekey"); err != nil {
		return nil, err
	}
	sig, err := owner.Sign(ContextSignedPreKey, signedPreKeyStatement(id, created, private.PublicKey()))
	if err != nil {
		return nil, fmt.Errorf("signed prekey %d: %w", id, err)
	}
	return &SignedPreKey{id: id, created: created, private: private, signature: sig}, nil
}

// ID returns the prekey id.
func (k *SignedPreKey) ID() uint32 { return k.id }

// Created returns the signed creation time.
func (k *SignedPreKey) Created() time.Time { return k.created }

// PrivateKey returns the ECDH private key.
func (k *SignedPreKey) PrivateKey() *ecdh.PrivateKey { return k.private }

// Public returns the form to upload.
func (k *SignedPreKey) Public() *SignedPreKeyPublic {
	return &SignedPreKeyPublic{ID: k.id, Created: k.created, Key: k.private.PublicKey(), Signature: append([]byte(nil), k.signature...)}
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
	created    time.Time
	private    *mlkem.DecapsulationKey768
	lastResort bool
	signature  []byte
}

// GenerateKEMPreKey generates a random ML-KEM-768 prekey with the given id and creation time
// (truncated to whole seconds) and signs it.
func GenerateKEMPreKey(owner *Identity, id uint32, lastResort bool, created time.Time) (*KEMPreKey, error) {
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, fmt.Errorf("generate kem prekey: %w", err)
	}
	return NewKEMPreKey(owner, id, created, dk, lastResort)
}

// NewKEMPreKey signs an existing ML-KEM-768 decapsulation key as KEM prekey id, created at
// created (truncated to whole seconds).
func NewKEMPreKey(owner *Identity, id uint32, created time.Time, private *mlkem.DecapsulationKey768, lastResort bool) (*KEMPreKey, error) {
	created = created.Truncate(time.Second)
	if err := checkCreated(created, "kem prekey"); err != nil {
		return nil, err
	}
	sig, err := owner.Sign(ContextKEMPreKey, kemPreKeyStatement(id, lastResort, created, private.EncapsulationKey()))
	if err != nil {
		return nil, fmt.Errorf("kem prekey %d: %w", id, err)
	}
	return &KEMPreKey{id: id, created: created, private: private, lastResort: lastResort, signature: sig}, nil
}

// ID returns the prekey id.
func (k *KEMPreKey) ID() uint32 { return k.id }

// Created returns the signed creation time.
func (k *KEMPreKey) Created() time.Time { return k.created }

// LastResort reports whether this is the last-resort KEM prekey.
func (k *KEMPreKey) LastResort() bool { return k.lastResort }

// PrivateKey returns the ML-KEM-768 decapsulation key.
func (k *KEMPreKey) PrivateKey() *mlkem.DecapsulationKey768 { return k.private }

// Public returns the form to upload.
func (k *KEMPreKey) Public() *KEMPreKeyPublic {
	return &KEMPreKeyPublic{
		ID:         k.id,
		Created:    k.created,
		Key:        k.private.EncapsulationKey(),
		LastResort: k.lastResort,
		Signature:  append([]byte(nil), k.signature...),
	}
}
