package keys

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
)

// Context names what a signature is for. Every signature made by an [Identity] covers its context,
// so a signature produced for one purpose can never be replayed as another.
type Context string

// Signature contexts used across Guardyn. Auth and CLI code must pick the one that names the
// statement being signed; new purposes get a new constant, never a reused one.
const (
	// ContextSignedPreKey signs a signed EC prekey: uint32 id || SEC 1 point.
	ContextSignedPreKey Context = "signed-prekey"
	// ContextKEMPreKey signs an ML-KEM prekey: uint32 id || last-resort byte || KEM type || key.
	ContextKEMPreKey Context = "kem-prekey"
	// ContextRegistration signs a device registration proof for the auth service.
	ContextRegistration Context = "registration"
	// ContextLoginChallenge signs a login challenge issued by the auth service.
	ContextLoginChallenge Context = "login-challenge"
	// ContextDeviceLink signs the statement that links a new device to an account.
	ContextDeviceLink Context = "device-link"
	// ContextDeviceLinkStatus signs a new device's request for the status of its link.
	ContextDeviceLinkStatus Context = "device-link-status"
)

// signaturePrefix starts every signed statement. With the length-prefixed context that follows it,
// the signed bytes are: "Guardyn signature v1" || 0x00 || uint8(len(context)) || context || msg.
// The prefix keeps Guardyn signatures apart from anything else the same key might ever sign.
const signaturePrefix = "Guardyn signature v1\x00"

// maxContextSize bounds a context so its length fits the one-byte length prefix.
const maxContextSize = 64

// statementDigest returns SHA-256 of the domain-separated statement for ctx and msg.
func statementDigest(ctx Context, msg []byte) ([32]byte, error) {
	if len(ctx) == 0 || len(ctx) > maxContextSize {
		return [32]byte{}, fmt.Errorf("keys: signature context length %d outside 1..%d", len(ctx), maxContextSize)
	}
	h := sha256.New()
	h.Write([]byte(signaturePrefix))
	h.Write([]byte{byte(len(ctx))})
	h.Write([]byte(ctx))
	h.Write(msg)
	var d [32]byte
	h.Sum(d[:0])
	return d, nil
}

// IdentityKey is the public half of a device identity: one P-256 point used to verify signatures
// and as the identity input to ECDH.
type IdentityKey struct {
	raw      [PublicKeySize]byte
	verifier *ecdsa.PublicKey
	dh       *ecdh.PublicKey
}

// ParseIdentityKey parses a SEC 1 uncompressed P-256 point. It rejects points off the curve, the
// point at infinity, compressed points and wrong lengths with [ErrInvalidKey].
func ParseIdentityKey(b []byte) (*IdentityKey, error) {
	if len(b) != PublicKeySize {
		return nil, fmt.Errorf("identity key of %d bytes, want %d: %w", len(b), PublicKeySize, ErrInvalidKey)
	}
	dh, err := ecdh.P256().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w: %v", ErrInvalidKey, err)
	}
	verifier, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w: %v", ErrInvalidKey, err)
	}
	k := &IdentityKey{verifier: verifier, dh: dh}
	copy(k.raw[:], b)
	return k, nil
}

// Bytes returns the 65-byte SEC 1 uncompressed encoding.
func (k *IdentityKey) Bytes() []byte { return append([]byte(nil), k.raw[:]...) }

// AppendBinary appends the 65-byte encoding to b.
func (k *IdentityKey) AppendBinary(b []byte) ([]byte, error) { return append(b, k.raw[:]...), nil }

// ECDH returns the key as an ECDH public key for DH1 and DH2 of PQXDH.
func (k *IdentityKey) ECDH() *ecdh.PublicKey { return k.dh }

// Equal reports whether k and other encode the same point, in constant time.
func (k *IdentityKey) Equal(other *IdentityKey) bool {
	return other != nil && subtle.ConstantTimeCompare(k.raw[:], other.raw[:]) == 1
}

// Verify checks sig, made by [Identity.Sign] with the same ctx over msg. It returns
// [ErrBadSignature] if the signature does not verify.
func (k *IdentityKey) Verify(ctx Context, msg, sig []byte) error {
	if len(sig) == 0 || len(sig) > MaxSignatureSize {
		return fmt.Errorf("signature of %d bytes: %w", len(sig), ErrBadSignature)
	}
	d, err := statementDigest(ctx, msg)
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(k.verifier, d[:], sig) {
		return fmt.Errorf("%s signature: %w", ctx, ErrBadSignature)
	}
	return nil
}

// Identity is a device's private identity key. It signs prekeys and auth statements and takes
// part in PQXDH as IK. Identities are not comparable with ==: compare public keys with
// [IdentityKey.Equal].
type Identity struct {
	_      [0]func()
	signer *ecdsa.PrivateKey
	dh     *ecdh.PrivateKey
	public *IdentityKey
}

// GenerateIdentity returns a new random identity.
func GenerateIdentity() (*Identity, error) {
	dh, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	scalar := dh.Bytes()
	defer clear(scalar)
	return NewIdentity(scalar)
}

// NewIdentity builds an identity from a raw 32-byte P-256 scalar (SEC 1, section 2.3.6). It
// returns an error if the scalar is zero or not below the group order.
func NewIdentity(scalar []byte) (*Identity, error) {
	if len(scalar) != PrivateKeySize {
		return nil, fmt.Errorf("identity scalar of %d bytes, want %d: %w", len(scalar), PrivateKeySize, ErrMalformed)
	}
	signer, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
	if err != nil {
		return nil, fmt.Errorf("identity scalar: %w: %v", ErrMalformed, err)
	}
	dh, err := signer.ECDH()
	if err != nil {
		return nil, fmt.Errorf("identity scalar: %w: %v", ErrMalformed, err)
	}
	public, err := ParseIdentityKey(dh.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	return &Identity{signer: signer, dh: dh, public: public}, nil
}

// Public returns the identity's public key.
func (id *Identity) Public() *IdentityKey { return id.public }

// ECDH returns the identity as an ECDH private key for DH1 and DH2 of PQXDH.
func (id *Identity) ECDH() *ecdh.PrivateKey { return id.dh }

// Sign signs msg for the purpose named by ctx: an ECDSA P-256/SHA-256 signature, ASN.1 DER, over
// "Guardyn signature v1" || 0x00 || uint8(len(ctx)) || ctx || msg. Verify it with
// [IdentityKey.Verify] and the same ctx.
func (id *Identity) Sign(ctx Context, msg []byte) ([]byte, error) {
	d, err := statementDigest(ctx, msg)
	if err != nil {
		return nil, err
	}
	sig, err := ecdsa.SignASN1(rand.Reader, id.signer, d[:])
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", ctx, err)
	}
	return sig, nil
}

// MarshalBinary encodes the identity for local storage: version 1 || 32-byte scalar. The result
// is secret; the caller should clear it once stored.
func (id *Identity) MarshalBinary() ([]byte, error) {
	scalar := id.dh.Bytes()
	defer clear(scalar)
	return append([]byte{encodingVersion}, scalar...), nil
}

// ParseIdentity decodes the output of [Identity.MarshalBinary].
func ParseIdentity(b []byte) (*Identity, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("identity: empty input: %w", ErrMalformed)
	}
	if b[0] != encodingVersion {
		return nil, fmt.Errorf("identity version %d: %w", b[0], ErrUnsupportedVersion)
	}
	if len(b) != 1+PrivateKeySize {
		return nil, fmt.Errorf("identity of %d bytes, want %d: %w", len(b), 1+PrivateKeySize, ErrMalformed)
	}
	return NewIdentity(b[1:])
}
