package sframe

import (
	"crypto/hkdf"
	"encoding/binary"
	"fmt"
)

// MinBaseKeySize is the shortest base key accepted. RFC 9605 puts no floor on
// it; 16 bytes keeps a mistaken short key from passing silently.
const MinBaseKeySize = 16

// frameKey is one KID's installed key: its AEAD and its salt. The nonce
// scratch lives here so that forming a nonce never escapes to the heap.
type frameKey struct {
	aead  frameAEAD
	salt  [nonceSize]byte
	nonce [nonceSize]byte
	_     [0]func() // holds key material: not comparable with ==
}

// deriveLabel builds "SFrame 1.0 Secret key " or "... salt " followed by KID
// (8 bytes) and the cipher suite (2 bytes), big-endian (RFC 9605, Section
// 4.4.2).
func deriveLabel(prefix string, kid uint64, suite CipherSuite) string {
	b := make([]byte, 0, len(prefix)+10)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, kid)
	b = binary.BigEndian.AppendUint16(b, uint16(suite))
	return string(b)
}

// newFrameKey derives the key and salt for kid from baseKey and builds the
// AEAD once.
func newFrameKey(suite CipherSuite, kid uint64, baseKey []byte) (*frameKey, error) {
	p, err := suite.check(true) // the constructors apply the tag policy
	if err != nil {
		return nil, err
	}
	secret, key, salt, err := deriveKeyAndSalt(p, suite, kid, baseKey)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	defer clear(key)
	defer clear(salt)
	aead, err := newFrameAEAD(p, key)
	if err != nil {
		return nil, err
	}
	k := &frameKey{aead: aead}
	copy(k.salt[:], salt)
	return k, nil
}

// deriveKeyAndSalt is RFC 9605, Section 4.4.2:
//
//	sframe_secret = HKDF-Extract("", base_key)
//	sframe_key    = HKDF-Expand(sframe_secret, key_label, Nk)
//	sframe_salt   = HKDF-Expand(sframe_secret, salt_label, Nn)
func deriveKeyAndSalt(p suiteParams, suite CipherSuite, kid uint64, baseKey []byte) (secret, key, salt []byte, err error) {
	if len(baseKey) < MinBaseKeySize {
		return nil, nil, nil, fmt.Errorf("sframe: base key of %d bytes, want at least %d: %w", len(baseKey), MinBaseKeySize, ErrBadBaseKey)
	}
	secret, err = hkdf.Extract(p.newHash(), baseKey, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sframe: extract sframe_secret: %w", err)
	}
	key, err = hkdf.Expand(p.newHash(), secret, deriveLabel(keyLabelPrefix, kid, suite), p.nk)
	if err != nil {
		clear(secret)
		return nil, nil, nil, fmt.Errorf("sframe: expand sframe_key: %w", err)
	}
	salt, err = hkdf.Expand(p.newHash(), secret, deriveLabel(saltLabelPrefix, kid, suite), nonceSize)
	if err != nil {
		clear(secret)
		clear(key)
		return nil, nil, nil, fmt.Errorf("sframe: expand sframe_salt: %w", err)
	}
	return secret, key, salt, nil
}

// The label prefixes end in a space: the KID follows it directly.
const (
	keyLabelPrefix  = "SFrame 1.0 Secret key "
	saltLabelPrefix = "SFrame 1.0 Secret salt "
)

// formNonce writes salt XOR CTR (CTR big-endian, right-aligned in Nn bytes)
// into the key's scratch and returns it. Only the last 8 bytes can differ
// from the salt.
func (k *frameKey) formNonce(ctr uint64) []byte {
	k.nonce = k.salt
	tail := k.nonce[nonceSize-8:]
	binary.BigEndian.PutUint64(tail, binary.BigEndian.Uint64(tail)^ctr)
	return k.nonce[:]
}

// destroy zeroes what this package can reach of the key. The AES key
// schedule and HMAC pads inside the standard library cannot be reached.
func (k *frameKey) destroy() {
	clear(k.salt[:])
	clear(k.nonce[:])
	k.aead = nil
}
