package ratchet

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// Wire format of one message, version 2 (all integers big-endian; docs/crypto/ratchet.md has the
// tables):
//
//	plain header:     version 0x03 | nonce (12) | DH ratchet key (65) | PN (4) | N (4) | AES-256-GCM(body) | tag (16)
//	encrypted header: version 0x04 | nonce (12) | AES-256-GCM_HK(header) (73+16) | AES-256-GCM(body) | tag (16)
//
// The nonce is random per message. The body's AES-256-GCM key and nonce are derived from the
// message key and this nonce, so even a message key used twice (a state restored from an older
// copy) never repeats a key and nonce pair; with header encryption the same nonce is the header
// AEAD's. The body AEAD authenticates the caller's associated data followed by every byte before
// the body (version, nonce and header, encrypted or not), Signal's CONCAT(AD, header); the prefix
// length is fixed per version, so the concatenation is unambiguous. The header AEAD authenticates
// the version byte. Versions 0x01 and 0x02 (deterministic body nonces) are refused.
const (
	versionPlainHeader     = 0x03
	versionEncryptedHeader = 0x04
	// Version 1 of the wire format, refused since version 2 (ErrUnsupportedVersion).
	legacyVersionPlainHeader     = 0x01
	legacyVersionEncryptedHeader = 0x02

	pubKeyLen = 65 // uncompressed SEC1 P-256 point
	headerLen = pubKeyLen + 4 + 4

	messageNonceLen    = 12
	encHeaderLen       = headerLen + aeadTagLen
	plainPrefixLen     = 1 + messageNonceLen + headerLen
	encryptedPrefixLen = 1 + messageNonceLen + encHeaderLen
)

// header is Signal's HEADER(dh, pn, n).
type header struct {
	dh    [pubKeyLen]byte
	pn, n uint32
}

func (h *header) put(b []byte) {
	copy(b[:pubKeyLen], h.dh[:])
	binary.BigEndian.PutUint32(b[pubKeyLen:], h.pn)
	binary.BigEndian.PutUint32(b[pubKeyLen+4:], h.n)
}

func parseHeader(b []byte) header {
	var h header
	copy(h.dh[:], b[:pubKeyLen])
	h.pn = binary.BigEndian.Uint32(b[pubKeyLen:])
	h.n = binary.BigEndian.Uint32(b[pubKeyLen+4:])
	return h
}

// prefixLen is the length of everything before the body for a message version.
func prefixLen(headerEncryption bool) int {
	if headerEncryption {
		return encryptedPrefixLen
	}
	return plainPrefixLen
}

func versionFor(headerEncryption bool) byte {
	if headerEncryption {
		return versionEncryptedHeader
	}
	return versionPlainHeader
}

// checkVersion rejects unknown versions and messages of the other header mode, before any
// length-dependent parsing.
func checkVersion(message []byte, headerEncryption bool) error {
	if len(message) == 0 {
		return fmt.Errorf("empty message: %w", ErrMalformed)
	}
	switch v := message[0]; v {
	case versionFor(headerEncryption):
		return nil
	case versionPlainHeader, versionEncryptedHeader:
		return fmt.Errorf("message version %#x does not match this session's header mode: %w", v, ErrMalformed)
	case legacyVersionPlainHeader, legacyVersionEncryptedHeader:
		return fmt.Errorf("message version %#x predates random message nonces (version 2); the session must be started again: %w", v, ErrUnsupportedVersion)
	default:
		return fmt.Errorf("message version %#x: %w", v, ErrUnsupportedVersion)
	}
}

// newAESGCM keys AES-256-GCM. The two allocations it costs (key schedule, GHASH table) are the
// only ones on the steady-state path: crypto/aes and crypto/cipher offer no way to re-key.
func newAESGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// headerAEAD caches the AES-256-GCM of one header key. A header key serves a whole chain, so
// keying it once per chain instead of once per message saves a key schedule and two allocations
// on every message.
type headerAEAD struct {
	key  [keyLen]byte
	aead cipher.AEAD
}

func (c *headerAEAD) get(key *[keyLen]byte) (cipher.AEAD, error) {
	if c.aead != nil && subtle.ConstantTimeCompare(c.key[:], key[:]) == 1 {
		return c.aead, nil
	}
	aead, err := newAESGCM(key[:])
	if err != nil {
		return nil, err
	}
	c.key, c.aead = *key, aead
	return aead, nil
}

// sealBody appends the body ciphertext of message key mk and message nonce to dst. The AEAD
// nonce lives in the State: a local would escape through the cipher.AEAD interface and cost an
// allocation.
func (s *State) sealBody(dst []byte, mk *[keyLen]byte, nonce, plaintext, ad []byte) ([]byte, error) {
	var key [aeadKeyLen]byte
	key, s.nonceBuf = messageAEADKeys(&s.zeroSalt, mk, nonce)
	defer clear(key[:])
	aead, err := newAESGCM(key[:])
	if err != nil {
		return nil, err
	}
	return aead.Seal(dst, s.nonceBuf[:], plaintext, ad), nil
}

// openBody appends the plaintext of body under message key mk and message nonce to dst.
func (s *State) openBody(dst []byte, mk *[keyLen]byte, nonce, body, ad []byte) ([]byte, error) {
	var key [aeadKeyLen]byte
	key, s.nonceBuf = messageAEADKeys(&s.zeroSalt, mk, nonce)
	defer clear(key[:])
	aead, err := newAESGCM(key[:])
	if err != nil {
		return nil, err
	}
	out, err := aead.Open(dst, s.nonceBuf[:], body, ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}
