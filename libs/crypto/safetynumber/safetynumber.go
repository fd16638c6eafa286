// Package safetynumber computes the safety number two Guardyn users compare to check that no one
// sits between them, after Signal's numeric fingerprint; docs/crypto/envelope.md specifies it.
//
// A party's identity is its user id and the set of its devices' identity keys, so the number
// changes when either side adds, removes or replaces a device. Both sides compute the same
// 60 digits, shown as 12 groups of 5.
//
// Construction (version 1):
//
//	keys        = the party's SEC 1 uncompressed P-256 identity keys (65 bytes each),
//	              sorted ascending bytewise, no duplicates, 1..MaxDevices of them
//	material    = uint16_be(len(keys)) || keys[0] || keys[1] || ...
//	identifier  = uint8(len(user id)) || user id (1..MaxUserIDLen bytes of UTF-8)
//	h           = uint16_be(Version) || material || identifier
//	repeat Iterations times: h = SHA-512(h || material)
//	half        = for i in 0..5: uint40_be(h[5i : 5i+5]) mod 100000, as 5 decimal digits
//	number      = the two parties' 30-digit halves, the smaller (as a string) first
//
// Iterating SHA-512 makes finding a second identity whose half collides with a target's costly;
// ordering the halves makes the number independent of who computes it.
//
// Reference: https://signal.org/blog/safety-number-updates/ and libsignal's
// NumericFingerprintGenerator.
package safetynumber

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

const (
	// Version is the construction version hashed into every number.
	Version = 1
	// Iterations is the number of SHA-512 iterations per party (Signal's value).
	Iterations = 5200
	// MaxDevices bounds the identity keys of one party, which bounds the cost of Compute.
	MaxDevices = 64
	// MaxUserIDLen is the longest user id, in bytes.
	MaxUserIDLen = 64

	identityKeySize = 65
	chunks          = 6
	chunkSize       = 5
	chunkModulus    = 100000
	halfDigits      = chunks * chunkSize
)

// Errors callers can test with errors.Is.
var (
	// ErrInvalidUserID reports an empty, oversized or non-UTF-8 user id.
	ErrInvalidUserID = errors.New("safetynumber: invalid user id")
	// ErrNoKeys reports a party without identity keys.
	ErrNoKeys = errors.New("safetynumber: party has no identity keys")
	// ErrTooManyKeys reports a party with more than MaxDevices identity keys.
	ErrTooManyKeys = errors.New("safetynumber: too many identity keys")
	// ErrInvalidKey reports an identity key that is not a 65-byte uncompressed P-256 point.
	ErrInvalidKey = errors.New("safetynumber: invalid identity key")
	// ErrDuplicateKey reports the same identity key listed twice for one party.
	ErrDuplicateKey = errors.New("safetynumber: duplicate identity key")
)

// Party is one side of a conversation: a user and the identity keys of all its devices, in any
// order.
type Party struct {
	UserID       string
	IdentityKeys [][]byte
}

// Number is a safety number. Numbers are comparable with ==; the zero Number is never the
// result of Compute.
type Number struct {
	digits string
}

// Compute returns the safety number of local and remote. Swapping the arguments gives the same
// number.
func Compute(local, remote Party) (Number, error) {
	localHalf, err := local.fingerprint()
	if err != nil {
		return Number{}, fmt.Errorf("local party: %w", err)
	}
	remoteHalf, err := remote.fingerprint()
	if err != nil {
		return Number{}, fmt.Errorf("remote party: %w", err)
	}
	if remoteHalf < localHalf {
		localHalf, remoteHalf = remoteHalf, localHalf
	}
	return Number{digits: localHalf + remoteHalf}, nil
}

// String returns the 60 digits as 12 space-separated groups of 5, the form users compare.
func (n Number) String() string {
	var b strings.Builder
	for i := 0; i < len(n.digits); i += chunkSize {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(n.digits[i : i+chunkSize])
	}
	return b.String()
}

// fingerprint returns the party's 30-digit half.
func (p Party) fingerprint() (string, error) {
	material, err := p.keyMaterial()
	if err != nil {
		return "", err
	}
	if len(p.UserID) == 0 || len(p.UserID) > MaxUserIDLen || !utf8.ValidString(p.UserID) {
		return "", fmt.Errorf("%w: must be 1..%d bytes of UTF-8, got %d bytes", ErrInvalidUserID, MaxUserIDLen, len(p.UserID))
	}
	h := binary.BigEndian.AppendUint16(nil, Version)
	h = append(h, material...)
	h = append(h, byte(len(p.UserID)))
	h = append(h, p.UserID...)
	digest := sha512.New()
	for range Iterations {
		digest.Reset()
		digest.Write(h)
		digest.Write(material)
		h = digest.Sum(h[:0])
	}
	return encodeHalf(h), nil
}

// keyMaterial validates, sorts and concatenates the party's identity keys behind their count.
func (p Party) keyMaterial() ([]byte, error) {
	switch n := len(p.IdentityKeys); {
	case n == 0:
		return nil, ErrNoKeys
	case n > MaxDevices:
		return nil, fmt.Errorf("%w: %d, max %d", ErrTooManyKeys, n, MaxDevices)
	}
	keys := slices.Clone(p.IdentityKeys)
	for i, k := range keys {
		if len(k) != identityKeySize {
			return nil, fmt.Errorf("%w: key %d has %d bytes, want %d", ErrInvalidKey, i, len(k), identityKeySize)
		}
		if _, err := ecdh.P256().NewPublicKey(k); err != nil {
			return nil, fmt.Errorf("%w: key %d: %v", ErrInvalidKey, i, err)
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	material := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(keys)*identityKeySize), uint16(len(keys)))
	for i, k := range keys {
		if i > 0 && bytes.Equal(k, keys[i-1]) {
			return nil, fmt.Errorf("%w: listed twice", ErrDuplicateKey)
		}
		material = append(material, k...)
	}
	return material, nil
}

// encodeHalf turns the first 30 bytes of a digest into 30 digits, 5 per 5-byte chunk.
func encodeHalf(h []byte) string {
	var b strings.Builder
	b.Grow(halfDigits)
	for i := range chunks {
		chunk := h[i*chunkSize : (i+1)*chunkSize]
		v := uint64(chunk[0])<<32 | uint64(binary.BigEndian.Uint32(chunk[1:]))
		fmt.Fprintf(&b, "%05d", v%chunkModulus)
	}
	return b.String()
}
