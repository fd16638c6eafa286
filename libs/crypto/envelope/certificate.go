package envelope

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// Sender certificate limits and layout (version 1):
//
//	version          1 byte   = 1
//	issuer key id    4 bytes  big endian, KeyID of the signing key
//	expiry           8 bytes  big endian unix seconds
//	sender device id 4 bytes  big endian
//	identity key     65 bytes SEC 1 uncompressed P-256 point
//	user id length   1 byte   1..MaxUserIDLen
//	user id          UTF-8
//	signature        64 bytes Ed25519 over certificateSignatureContext || all the bytes above
const (
	// MaxUserIDLen is the longest sender user id, in bytes, a certificate can hold.
	MaxUserIDLen = 64
	// MaxCertificateSize is the longest encoded sender certificate.
	MaxCertificateSize = certificateFixedSize + MaxUserIDLen + ed25519.SignatureSize
	// MaxCertificateLifetime caps how long an Issuer's certificates stay valid: they are meant
	// to be short-lived and refreshed by the client.
	MaxCertificateLifetime = 7 * 24 * time.Hour

	certificateVersion   = 1
	identityKeySize      = 65
	certificateFixedSize = 1 + 4 + 8 + 4 + identityKeySize + 1

	// Offsets of the fixed fields.
	certKeyIDAt       = 1
	certExpiryAt      = certKeyIDAt + 4
	certDeviceIDAt    = certExpiryAt + 8
	certIdentityKeyAt = certDeviceIDAt + 4
	certUserIDLenAt   = certIdentityKeyAt + identityKeySize
	certUserIDAt      = certUserIDLenAt + 1
)

// certificateSignatureContext separates certificate signatures from anything else the auth
// service key might sign.
const certificateSignatureContext = "guardyn sender certificate v1\x00"

// KeyID returns the issuer key id carried by certificates that trustRoot, the auth service's
// Ed25519 certificate key, signs: the first four bytes of SHA-256(trustRoot), big endian. Deriving
// it from the key keeps issuer and clients in agreement without configuration, and lets a client
// that pinned several roots during a rotation pick the right one.
func KeyID(trustRoot ed25519.PublicKey) uint32 {
	sum := sha256.Sum256(trustRoot)
	return binary.BigEndian.Uint32(sum[:4])
}

// SenderCertificate is a parsed sender certificate. It is immutable: its accessors read the
// fields of the signed encoding, so what Verify checks is what callers see.
type SenderCertificate struct {
	userID      string
	deviceID    uint32
	identityKey *ecdh.PublicKey
	expires     time.Time
	issuerKeyID uint32
	encoded     []byte
}

// UserID is the sender's account.
func (c *SenderCertificate) UserID() string { return c.userID }

// DeviceID is the sender's device within its account.
func (c *SenderCertificate) DeviceID() uint32 { return c.deviceID }

// IdentityKey is the sender device's identity public key.
func (c *SenderCertificate) IdentityKey() *ecdh.PublicKey { return c.identityKey }

// Expires is the first instant at which the certificate is no longer valid.
func (c *SenderCertificate) Expires() time.Time { return c.expires }

// IssuerKeyID is the KeyID of the trust root that signed the certificate.
func (c *SenderCertificate) IssuerKeyID() uint32 { return c.issuerKeyID }

// ParseSenderCertificate decodes a certificate without verifying it; call Verify before trusting
// any field. It rejects unknown versions, trailing bytes and invalid identity keys.
func ParseSenderCertificate(b []byte) (*SenderCertificate, error) {
	if len(b) > MaxCertificateSize {
		return nil, fmt.Errorf("%w: certificate has %d bytes, max %d", ErrMalformed, len(b), MaxCertificateSize)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty certificate", ErrMalformed)
	}
	if b[0] != certificateVersion {
		return nil, fmt.Errorf("%w: certificate version %d", ErrUnsupportedVersion, b[0])
	}
	if len(b) < certificateFixedSize {
		return nil, fmt.Errorf("%w: certificate truncated at %d bytes", ErrMalformed, len(b))
	}
	userIDLen := int(b[certUserIDLenAt])
	if userIDLen == 0 || userIDLen > MaxUserIDLen {
		return nil, fmt.Errorf("%w: certificate user id length %d", ErrMalformed, userIDLen)
	}
	if want := certificateFixedSize + userIDLen + ed25519.SignatureSize; len(b) != want {
		return nil, fmt.Errorf("%w: certificate has %d bytes, want %d", ErrMalformed, len(b), want)
	}
	userID := b[certUserIDAt : certUserIDAt+userIDLen]
	if !utf8.Valid(userID) {
		return nil, fmt.Errorf("%w: certificate user id is not UTF-8", ErrMalformed)
	}
	key, err := ecdh.P256().NewPublicKey(b[certIdentityKeyAt:certUserIDLenAt])
	if err != nil {
		return nil, fmt.Errorf("%w: certificate identity key: %v", ErrMalformed, err)
	}
	expiry := binary.BigEndian.Uint64(b[certExpiryAt:])
	if expiry > maxUnixSeconds {
		return nil, fmt.Errorf("%w: certificate expiry %d out of range", ErrMalformed, expiry)
	}
	return &SenderCertificate{
		userID:      string(userID),
		deviceID:    binary.BigEndian.Uint32(b[certDeviceIDAt:]),
		identityKey: key,
		expires:     time.Unix(int64(expiry), 0).UTC(),
		issuerKeyID: binary.BigEndian.Uint32(b[certKeyIDAt:]),
		encoded:     bytes.Clone(b),
	}, nil
}

// maxUnixSeconds keeps expiries within int64 and far beyond any real date, so the decoded
// time.Time is well behaved.
const maxUnixSeconds = 1 << 40

// Bytes returns the signed encoding the certificate was parsed from.
func (c *SenderCertificate) Bytes() []byte { return bytes.Clone(c.encoded) }

// Verify checks that trustRoot signed the certificate and that it has not expired at now. A
// certificate is valid while now is before Expires.
func (c *SenderCertificate) Verify(trustRoot ed25519.PublicKey, now time.Time) error {
	if len(trustRoot) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: trust root has %d bytes, want %d", ErrInvalidKey, len(trustRoot), ed25519.PublicKeySize)
	}
	if rootID := KeyID(trustRoot); c.issuerKeyID != rootID {
		return fmt.Errorf("%w: issued under key id %08x, trust root is key id %08x", ErrUnknownIssuer, c.issuerKeyID, rootID)
	}
	if len(c.encoded) < ed25519.SignatureSize {
		return fmt.Errorf("%w: certificate was not parsed from bytes", ErrMalformed)
	}
	body, sig := c.encoded[:len(c.encoded)-ed25519.SignatureSize], c.encoded[len(c.encoded)-ed25519.SignatureSize:]
	if !ed25519.Verify(trustRoot, signedMessage(body), sig) {
		return ErrCertificateSignature
	}
	if !now.Before(c.expires) {
		return fmt.Errorf("%w: expired at %s, now %s", ErrCertificateExpired, c.expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func signedMessage(body []byte) []byte {
	return append([]byte(certificateSignatureContext), body...)
}

// Issuer signs sender certificates on the auth service.
type Issuer struct {
	_        [0]func() // holds a private key: == would not be constant time
	key      ed25519.PrivateKey
	lifetime time.Duration
	now      func() time.Time
}

// NewIssuer returns an Issuer that signs with key and makes certificates expire lifetime after
// now() (at most MaxCertificateLifetime, whole seconds).
func NewIssuer(key ed25519.PrivateKey, lifetime time.Duration, now func() time.Time) (*Issuer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: issuer key has %d bytes, want %d", ErrInvalidKey, len(key), ed25519.PrivateKeySize)
	}
	if lifetime < time.Second || lifetime > MaxCertificateLifetime {
		return nil, fmt.Errorf("%w: lifetime %s outside [1s, %s]", ErrInvalidCertificate, lifetime, MaxCertificateLifetime)
	}
	if now == nil {
		return nil, fmt.Errorf("%w: nil clock", ErrInvalidCertificate)
	}
	return &Issuer{key: key, lifetime: lifetime, now: now}, nil
}

// TrustRoot returns the public key clients pin (GetTrustRoot's sender_certificate_key) to verify
// this Issuer's certificates.
func (i *Issuer) TrustRoot() ed25519.PublicKey {
	return i.key.Public().(ed25519.PublicKey)
}

// Issue returns an encoded certificate vouching that identityKey belongs to device deviceID of
// user userID. The caller must have authenticated that device.
func (i *Issuer) Issue(userID string, deviceID uint32, identityKey *ecdh.PublicKey) ([]byte, error) {
	if len(userID) == 0 || len(userID) > MaxUserIDLen || !utf8.ValidString(userID) {
		return nil, fmt.Errorf("%w: user id must be 1..%d bytes of UTF-8, got %d bytes", ErrInvalidCertificate, MaxUserIDLen, len(userID))
	}
	if identityKey == nil || identityKey.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("%w: identity key must be P-256", ErrInvalidKey)
	}
	expires := i.now().Add(i.lifetime).Unix()
	if expires <= 0 || expires > maxUnixSeconds {
		return nil, fmt.Errorf("%w: expiry %d out of range", ErrInvalidCertificate, expires)
	}
	b := make([]byte, 0, certificateFixedSize+len(userID)+ed25519.SignatureSize)
	b = append(b, certificateVersion)
	b = binary.BigEndian.AppendUint32(b, KeyID(i.TrustRoot()))
	b = binary.BigEndian.AppendUint64(b, uint64(expires))
	b = binary.BigEndian.AppendUint32(b, deviceID)
	b = append(b, identityKey.Bytes()...)
	b = append(b, byte(len(userID)))
	b = append(b, userID...)
	return append(b, ed25519.Sign(i.key, signedMessage(b))...), nil
}
