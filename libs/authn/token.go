// Package authn issues and verifies Guardyn access tokens: short-lived,
// Ed25519-signed ([RFC 8032]) claims that every service verifies locally with
// the auth service's public key, plus the gRPC interceptor that demands them.
//
// Wire format, version 1, base64url without padding ([RFC 4648] §5) of:
//
//	version    1 byte  = 1
//	key id     8 bytes = SHA-256(public key)[:8]
//	issued at  8 bytes   big-endian Unix seconds
//	expires at 8 bytes   big-endian Unix seconds
//	token id   16 bytes
//	family id  16 bytes  session family (one Login and its refreshes)
//	device id  4 bytes   big-endian, never 0
//	user id    1 byte length (1..64) + UTF-8 bytes
//	signature  64 bytes  Ed25519 over "guardyn-access-token-v1\x00" || all bytes above
//
// [RFC 8032]: https://www.rfc-editor.org/rfc/rfc8032
// [RFC 4648]: https://www.rfc-editor.org/rfc/rfc4648
package authn

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits of the version 1 format.
const (
	Version1      = 1
	MaxUserIDLen  = 64
	KeyIDLen      = 8
	MaxLifetime   = 24 * time.Hour
	signatureSize = ed25519.SignatureSize

	// fixedLen is every field before the user id bytes.
	fixedLen = 1 + KeyIDLen + 8 + 8 + 16 + 16 + 4 + 1
	minRaw   = fixedLen + 1 + signatureSize
	maxRaw   = fixedLen + MaxUserIDLen + signatureSize
	// MaxTokenLen is the longest encoded token; longer input is rejected
	// before decoding.
	MaxTokenLen = (maxRaw*8 + 5) / 6
)

// signingContext separates token signatures from every other use of the
// auth service key.
const signingContext = "guardyn-access-token-v1\x00"

var encoding = base64.RawURLEncoding.Strict()

// Errors returned by token decoding and verification. Every verification
// failure wraps exactly one of them.
var (
	ErrMalformed     = errors.New("malformed access token")
	ErrVersion       = errors.New("unsupported access token version")
	ErrUnknownKey    = errors.New("access token signed by an unknown key")
	ErrSignature     = errors.New("access token signature invalid")
	ErrExpired       = errors.New("access token expired")
	ErrNotYetValid   = errors.New("access token issued in the future")
	ErrDeviceRevoked = errors.New("access token device removed")
	// ErrRevocationUnknown: whether the device was removed cannot be told right
	// now (the directory is unreachable); retry later.
	ErrRevocationUnknown = errors.New("device revocation status unavailable")
	errLifetimeTooBig    = fmt.Errorf("%w: lifetime exceeds %v", ErrMalformed, MaxLifetime)
)

// KeyID identifies a signing key inside tokens, so verifiers can hold the
// old and new keys during a rotation.
type KeyID [KeyIDLen]byte

// KeyIDOf returns the key id of pub.
func KeyIDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	return KeyID(sum[:KeyIDLen])
}

// Claims are what a token asserts about its bearer.
type Claims struct {
	UserID    string
	DeviceID  uint32
	TokenID   [16]byte
	FamilyID  [16]byte
	IssuedAt  time.Time // whole seconds, UTC
	ExpiresAt time.Time // whole seconds, UTC
}

// rawToken is a decoded, not yet verified token.
type rawToken struct {
	version byte
	keyID   KeyID
	claims  Claims
	signed  []byte // the bytes the signature covers, without the context
	sig     []byte
}

// decode parses an encoded token into buf-backed fields. It checks
// structure only; the signature and times are checked by Verifier.
func decode(token string, buf *[maxRaw]byte) (rawToken, error) {
	var t rawToken
	if len(token) > MaxTokenLen {
		return t, fmt.Errorf("%w: %d characters, limit %d", ErrMalformed, len(token), MaxTokenLen)
	}
	if len(token) < (minRaw*8+5)/6 {
		return t, fmt.Errorf("%w: %d characters is too short", ErrMalformed, len(token))
	}
	n, err := encoding.Decode(buf[:], []byte(token))
	if err != nil {
		return t, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	raw := buf[:n]
	if raw[0] != Version1 {
		return t, fmt.Errorf("%w %d", ErrVersion, raw[0])
	}
	t.version = raw[0]
	copy(t.keyID[:], raw[1:9])
	iat := int64(binary.BigEndian.Uint64(raw[9:17]))
	exp := int64(binary.BigEndian.Uint64(raw[17:25]))
	copy(t.claims.TokenID[:], raw[25:41])
	copy(t.claims.FamilyID[:], raw[41:57])
	t.claims.DeviceID = binary.BigEndian.Uint32(raw[57:61])
	userLen := int(raw[61])
	if userLen == 0 || userLen > MaxUserIDLen {
		return t, fmt.Errorf("%w: user id length %d", ErrMalformed, userLen)
	}
	if n != fixedLen+userLen+signatureSize {
		return t, fmt.Errorf("%w: %d bytes for a %d-byte user id", ErrMalformed, n, userLen)
	}
	user := raw[fixedLen : fixedLen+userLen]
	if !utf8.Valid(user) {
		return t, fmt.Errorf("%w: user id is not UTF-8", ErrMalformed)
	}
	if t.claims.DeviceID == 0 {
		return t, fmt.Errorf("%w: device id 0", ErrMalformed)
	}
	if iat < 0 || exp <= iat {
		return t, fmt.Errorf("%w: expiry %d not after issue %d", ErrMalformed, exp, iat)
	}
	if exp-iat > int64(MaxLifetime/time.Second) {
		return t, errLifetimeTooBig
	}
	t.claims.UserID = string(user)
	t.claims.IssuedAt = time.Unix(iat, 0).UTC()
	t.claims.ExpiresAt = time.Unix(exp, 0).UTC()
	t.signed = raw[:fixedLen+userLen]
	t.sig = raw[fixedLen+userLen:]
	return t, nil
}

// encode lays out claims for key id kid, without the signature.
func encode(kid KeyID, c Claims) ([]byte, error) {
	if c.UserID == "" || len(c.UserID) > MaxUserIDLen || !utf8.ValidString(c.UserID) {
		return nil, fmt.Errorf("user id %q: want 1..%d bytes of UTF-8", c.UserID, MaxUserIDLen)
	}
	if c.DeviceID == 0 {
		return nil, errors.New("device id 0 is not a device")
	}
	out := make([]byte, 0, fixedLen+len(c.UserID)+signatureSize)
	out = append(out, Version1)
	out = append(out, kid[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(c.IssuedAt.Unix()))
	out = binary.BigEndian.AppendUint64(out, uint64(c.ExpiresAt.Unix()))
	out = append(out, c.TokenID[:]...)
	out = append(out, c.FamilyID[:]...)
	out = binary.BigEndian.AppendUint32(out, c.DeviceID)
	out = append(out, byte(len(c.UserID)))
	out = append(out, c.UserID...)
	return out, nil
}

// signedMessage is what Ed25519 signs: the context string then the token
// bytes. buf avoids an allocation on the verify path.
func signedMessage(buf *[len(signingContext) + maxRaw]byte, signed []byte) []byte {
	n := copy(buf[:], signingContext)
	n += copy(buf[n:], signed)
	return buf[:n]
}
