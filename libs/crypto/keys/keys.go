// Package keys generates, signs and encodes Guardyn device keys: the identity key, signed and
// one-time P-256 prekeys and ML-KEM-768 prekeys, as used by [PQXDH].
//
// A device has one [Identity], a P-256 key used both for ECDSA signatures and for ECDH (the role
// XEdDSA plays in Signal). It publishes a [Bundle]-shaped set of public prekeys and keeps the private
// halves in a [PreKeyStore], which finds them by id and forgets one-time prekeys once used.
//
// Signatures are ECDSA P-256 with SHA-256, ASN.1 DER encoded (at most [MaxSignatureSize] bytes),
// always over a domain-separated statement: see [Identity.Sign] and the Context constants.
//
// Signed and KEM prekeys carry a signed creation time; initiators refuse those older than
// [MaxPreKeyAge] ([Bundle.CheckAge]), and devices rotate them well before.
//
// Encodings: public keys are SEC 1 uncompressed points (65 bytes) and ML-KEM-768 encapsulation
// keys (1184 bytes). Private material for local storage is a versioned binary format; decoders
// reject unknown versions with [ErrUnsupportedVersion] and malformed input with [ErrMalformed].
//
// [PQXDH]: https://signal.org/docs/specifications/pqxdh/
package keys

import "errors"

// Errors callers can test with errors.Is.
var (
	// ErrMalformed reports bytes that do not decode as the expected key, bundle or store.
	ErrMalformed = errors.New("keys: malformed encoding")
	// ErrUnsupportedVersion reports an encoding whose version byte this code does not know.
	ErrUnsupportedVersion = errors.New("keys: unsupported encoding version")
	// ErrInvalidKey reports a public key that is not a valid point or KEM key (off-curve,
	// infinity, compressed form, wrong length).
	ErrInvalidKey = errors.New("keys: invalid public key")
	// ErrBadSignature reports a signature that does not verify under the identity key.
	ErrBadSignature = errors.New("keys: bad signature")
	// ErrUnknownPreKey reports a prekey id the store never held.
	ErrUnknownPreKey = errors.New("keys: unknown prekey id")
	// ErrPreKeyUsed reports a one-time prekey id the store held once but has already consumed.
	ErrPreKeyUsed = errors.New("keys: one-time prekey already used")
	// ErrIDsExhausted reports that a store has handed out every uint32 id of a kind.
	ErrIDsExhausted = errors.New("keys: prekey ids exhausted")
)

const (
	// PublicKeySize is the length of a SEC 1 uncompressed P-256 point: 0x04 || X || Y.
	PublicKeySize = 65
	// PrivateKeySize is the length of a raw P-256 scalar (SEC 1, section 2.3.6).
	PrivateKeySize = 32
	// MaxSignatureSize bounds an ASN.1 DER ECDSA P-256 signature: SEQUENCE of two INTEGERs of at
	// most 33 bytes each, 2+2+33+2+33 = 72.
	MaxSignatureSize = 72
	// KEMPublicKeySize is the length of an ML-KEM-768 encapsulation key (FIPS 203).
	KEMPublicKeySize = 1184
	// KEMSeedSize is the length of the ML-KEM-768 decapsulation key seed (d || z, FIPS 203).
	KEMSeedSize = 64
)

// encodingVersion is the first byte of the identity encoding; bundles and prekey stores have
// their own versions (bundleVersion, storeVersion), which moved on when prekeys got creation
// times.
const encodingVersion = 1
