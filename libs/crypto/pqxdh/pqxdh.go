// Package pqxdh implements Guardyn's hybrid post-quantum key agreement: Signal's [PQXDH] with
// ECDH P-256 in place of X25519, ML-KEM-768 ([FIPS 203]) as the KEM and HKDF-SHA256.
//
// The initiator (Alice) fetches the responder's (Bob's) [keys.Bundle] and calls [Initiate]; she
// gets a 32-byte shared key SK, the associated data AD and a [Header] she sends with her first
// messages. Bob passes that header to [Respond] with his [PreKeyStore] and derives the same SK.
// Respond does not consume one-time prekeys: the caller consumes them once the first message has
// authenticated under SK, so a forged header cannot burn them.
//
//	DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   DH4 = DH(EK_A, OPK_B)
//	(CT, SS) = ML-KEM-768.Encaps(PQPK_B)
//	KB = SHA-256(PQPK_B || CT)
//	SK = HKDF-SHA256(salt = 32 zero bytes, IKM = F || DH1 || DH2 || DH3 [|| DH4] || SS, info = [Info] || KB)
//	AD = IK_A || IK_B || KB (65-byte SEC 1 uncompressed points, then 32 bytes)
//
// F is 32 0xFF bytes: as in the PQXDH spec, it makes the start of the IKM never a valid scalar or
// point encoding. DH outputs are 32-byte P-256 x-coordinates; DH4 is present exactly when the
// bundle carried a one-time EC prekey. KB binds the KEM public key and ciphertext into both SK
// and AD, so a session key cannot be shared by two handshakes that differ in either, whatever
// the KEM's own binding properties (the KEM re-encapsulation concern raised against PQXDH
// revision 1). Prekey signatures are checked by [keys.Bundle.Verify] (ECDSA P-256/SHA-256 over
// domain-separated statements, see package keys).
//
// This is protocol version 2 (header version 2, [Info] with "v2"). Version 1 omitted KB; its
// headers are refused with [ErrUnsupportedVersion], and sessions made by it are refused by
// package session, so they are started again.
//
// [PQXDH]: https://signal.org/docs/specifications/pqxdh/
// [FIPS 203]: https://doi.org/10.6028/NIST.FIPS.203
package pqxdh

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
)

const (
	// Info is the HKDF info string: application and protocol version, curve, hash and KEM joined
	// by '_', as the PQXDH spec prescribes. KB follows it in the info.
	Info = "Guardyn_PQXDH_v2_P-256_SHA-256_ML-KEM-768"
	// SharedKeySize is the length of SK.
	SharedKeySize = 32
	// KEMBindingSize is the length of KB = SHA-256(PQPK_B || CT).
	KEMBindingSize = sha256.Size
	// AssociatedDataSize is the length of AD = IK_A || IK_B || KB.
	AssociatedDataSize = 2*keys.PublicKeySize + KEMBindingSize
	// dhSize is the length of a P-256 ECDH output (the x-coordinate).
	dhSize = 32
	// fSize is the length of F, the 0xFF prefix of the HKDF input.
	fSize = 32
)

// Errors callers can test with errors.Is. Key and store problems surface as the errors of package
// keys: [keys.ErrInvalidKey], [keys.ErrBadSignature], [keys.ErrUnknownPreKey], [keys.ErrPreKeyUsed].
var (
	// ErrMalformed reports a header that does not decode.
	ErrMalformed = errors.New("pqxdh: malformed header")
	// ErrUnsupportedVersion reports a header version this code does not know.
	ErrUnsupportedVersion = errors.New("pqxdh: unsupported header version")
	// ErrMissingKEMCiphertext reports a header without the ML-KEM ciphertext: PQXDH without it
	// would silently fall back to classical X3DH security.
	ErrMissingKEMCiphertext = errors.New("pqxdh: missing kem ciphertext")
)

// Initiation is what [Initiate] gives the initiator.
type Initiation struct {
	// SharedKey is SK, the secret that seeds the Double Ratchet. The caller should clear it once
	// the ratchet is initialised.
	SharedKey []byte
	// AssociatedData is AD = IK_A || IK_B || KB; every message of the session authenticates it.
	AssociatedData []byte
	// Header goes in the clear with the initiator's first messages.
	Header *Header
	// RemoteIdentity is Bob's identity key, taken from the verified bundle.
	RemoteIdentity *keys.IdentityKey
	// RemoteSignedPreKey is SPK_B, which the Double Ratchet uses as Bob's first ratchet key.
	RemoteSignedPreKey *ecdh.PublicKey
}

// encapsulateFunc encapsulates to an ML-KEM-768 key; tests swap in mlkemtest for fixed vectors.
type encapsulateFunc func(*mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)

func encapsulate(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
	ss, ct := ek.Encapsulate()
	return ss, ct, nil
}

// Initiate runs the initiator's side of PQXDH against bundle. It verifies the bundle's signatures
// first and fails with [keys.ErrBadSignature] if either is bad, then refuses a signed or KEM
// prekey signed more than [keys.MaxPreKeyAge] ago (by the system clock) with
// [keys.ErrPreKeyExpired].
func Initiate(identity *keys.Identity, bundle *keys.Bundle) (*Initiation, error) {
	ek, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: generate ephemeral key: %w", err)
	}
	return initiate(identity, bundle, time.Now(), ek, encapsulate)
}

func initiate(identity *keys.Identity, bundle *keys.Bundle, now time.Time, ek *ecdh.PrivateKey, encaps encapsulateFunc) (*Initiation, error) {
	if err := bundle.Verify(); err != nil {
		return nil, fmt.Errorf("pqxdh: %w", err)
	}
	if err := bundle.CheckAge(now); err != nil {
		return nil, fmt.Errorf("pqxdh: %w", err)
	}
	ss, ct, err := encaps(bundle.KEMPreKey.Key)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: encapsulate: %w", err)
	}
	defer clear(ss)

	var opk *ecdh.PublicKey
	h := &Header{
		IdentityKey:    identity.Public(),
		EphemeralKey:   ek.PublicKey(),
		SignedPreKeyID: bundle.SignedPreKey.ID,
		KEMPreKeyID:    bundle.KEMPreKey.ID,
		KEMCiphertext:  ct,
	}
	if bundle.OneTimePreKey != nil {
		opk = bundle.OneTimePreKey.Key
		h.HasOneTimePreKey = true
		h.OneTimePreKeyID = bundle.OneTimePreKey.ID
	}

	ikm := newKeyMaterial()
	defer func() { clear(ikm[:cap(ikm)]) }()
	steps := []dhStep{
		{identity.ECDH(), bundle.SignedPreKey.Key},
		{ek, bundle.IdentityKey.ECDH()},
		{ek, bundle.SignedPreKey.Key},
	}
	if opk != nil {
		steps = append(steps, dhStep{ek, opk})
	}
	if ikm, err = appendKeyMaterial(ikm, steps, ss); err != nil {
		return nil, err
	}
	kb := kemBinding(bundle.KEMPreKey.Key, ct)
	sk, err := deriveSharedKey(ikm, &kb)
	if err != nil {
		return nil, err
	}
	return &Initiation{
		SharedKey:          sk,
		AssociatedData:     associatedData(identity.Public(), bundle.IdentityKey, &kb),
		Header:             h,
		RemoteIdentity:     bundle.IdentityKey,
		RemoteSignedPreKey: bundle.SignedPreKey.Key,
	}, nil
}

// PreKeyStore finds the responder's private prekeys by id. [keys.PreKeyStore] implements it.
type PreKeyStore interface {
	SignedPreKey(id uint32) (*keys.SignedPreKey, error)
	OneTimePreKey(id uint32) (*keys.OneTimePreKey, error)
	KEMPreKey(id uint32) (*keys.KEMPreKey, error)
}

// Response is what [Respond] gives the responder.
type Response struct {
	// SharedKey is SK; the caller should clear it once the ratchet is initialised.
	SharedKey []byte
	// AssociatedData is AD = IK_A || IK_B || KB.
	AssociatedData []byte
	// RemoteIdentity is Alice's identity key, as claimed by the header. It is authenticated only
	// once a message encrypted under SK decrypts.
	RemoteIdentity *keys.IdentityKey
	// SignedPreKey is SPK_B's private key, the responder's first ratchet key.
	SignedPreKey *ecdh.PrivateKey
}

// Respond runs the responder's side of PQXDH for header h. It looks prekeys up without consuming
// them; once the first message authenticates, the caller must consume the one-time prekey
// (h.OneTimePreKeyID when h.HasOneTimePreKey) and the KEM prekey (h.KEMPreKeyID; a no-op for the
// last-resort key in [keys.PreKeyStore]).
func Respond(identity *keys.Identity, store PreKeyStore, h *Header) (*Response, error) {
	if len(h.KEMCiphertext) == 0 {
		return nil, ErrMissingKEMCiphertext
	}
	if len(h.KEMCiphertext) != mlkem.CiphertextSize768 {
		return nil, fmt.Errorf("kem ciphertext of %d bytes, want %d: %w", len(h.KEMCiphertext), mlkem.CiphertextSize768, ErrMalformed)
	}
	if h.IdentityKey == nil || h.EphemeralKey == nil || h.EphemeralKey.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("header without P-256 identity or ephemeral key: %w", ErrMalformed)
	}
	spk, err := store.SignedPreKey(h.SignedPreKeyID)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: %w", err)
	}
	kem, err := store.KEMPreKey(h.KEMPreKeyID)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: %w", err)
	}
	var opk *keys.OneTimePreKey
	if h.HasOneTimePreKey {
		if opk, err = store.OneTimePreKey(h.OneTimePreKeyID); err != nil {
			return nil, fmt.Errorf("pqxdh: %w", err)
		}
	}

	ss, err := kem.PrivateKey().Decapsulate(h.KEMCiphertext)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: decapsulate: %w", err)
	}
	defer clear(ss)

	ikm := newKeyMaterial()
	defer func() { clear(ikm[:cap(ikm)]) }()
	steps := []dhStep{
		{spk.PrivateKey(), h.IdentityKey.ECDH()},
		{identity.ECDH(), h.EphemeralKey},
		{spk.PrivateKey(), h.EphemeralKey},
	}
	if opk != nil {
		steps = append(steps, dhStep{opk.PrivateKey(), h.EphemeralKey})
	}
	if ikm, err = appendKeyMaterial(ikm, steps, ss); err != nil {
		return nil, err
	}
	kb := kemBinding(kem.PrivateKey().EncapsulationKey(), h.KEMCiphertext)
	sk, err := deriveSharedKey(ikm, &kb)
	if err != nil {
		return nil, err
	}
	return &Response{
		SharedKey:      sk,
		AssociatedData: associatedData(h.IdentityKey, identity.Public(), &kb),
		RemoteIdentity: h.IdentityKey,
		SignedPreKey:   spk.PrivateKey(),
	}, nil
}

// dhStep is one of DH1..DH4, in the order they enter the key material.
type dhStep struct {
	priv *ecdh.PrivateKey
	pub  *ecdh.PublicKey
}

// newKeyMaterial returns F with room for DH1..DH4 and SS.
func newKeyMaterial() []byte {
	ikm := make([]byte, fSize, fSize+4*dhSize+mlkem.SharedKeySize)
	for i := range ikm {
		ikm[i] = 0xFF
	}
	return ikm
}

// appendKeyMaterial appends DH1..DH4 and then SS to ikm, clearing each temporary DH output.
func appendKeyMaterial(ikm []byte, steps []dhStep, ss []byte) ([]byte, error) {
	for i, s := range steps {
		out, err := s.priv.ECDH(s.pub)
		if err != nil {
			return ikm, fmt.Errorf("pqxdh: DH%d: %w: %v", i+1, keys.ErrInvalidKey, err)
		}
		ikm = append(ikm, out...)
		clear(out)
	}
	return append(ikm, ss...), nil
}

// kemBinding is KB = SHA-256(PQPK_B || CT); both have fixed lengths, so the input is unambiguous.
func kemBinding(pk *mlkem.EncapsulationKey768, ct []byte) [KEMBindingSize]byte {
	h := sha256.New()
	h.Write(pk.Bytes())
	h.Write(ct)
	var kb [KEMBindingSize]byte
	h.Sum(kb[:0])
	return kb
}

// deriveSharedKey is the PQXDH KDF: HKDF-SHA256 with a zero salt and info Info || KB.
func deriveSharedKey(ikm []byte, kb *[KEMBindingSize]byte) ([]byte, error) {
	var salt [sha256.Size]byte
	sk, err := hkdf.Key(sha256.New, ikm, salt[:], Info+string(kb[:]), SharedKeySize)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: hkdf: %w", err)
	}
	return sk, nil
}

// associatedData returns IK_A || IK_B || KB.
func associatedData(initiator, responder *keys.IdentityKey, kb *[KEMBindingSize]byte) []byte {
	ad := make([]byte, 0, AssociatedDataSize)
	ad, _ = initiator.AppendBinary(ad)
	ad, _ = responder.AppendBinary(ad)
	return append(ad, kb[:]...)
}
