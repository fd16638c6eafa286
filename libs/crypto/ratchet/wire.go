package ratchet

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// Wire format of one message (all integers big-endian; docs/crypto/ratchet.md has the tables):
//
//	plain header:     version 0x01 | DH ratchet key (65) | PN (4) | N (4) | AES-256-GCM(body) | tag (16)
//	encrypted header: version 0x02 | nonce (12) | AES-256-GCM_HK(header) (73+16) | AES-256-GCM(body) | tag (16)
//
// The body AEAD authenticates the caller's associated data followed by every byte before the
// body (version and header, encrypted or not), Signal's CONCAT(AD, header); the header length is
// fixed per version, so the concatenation is unambiguous. The header AEAD authenticates the
// version byte.
const (
	versionPlainHeader     = 0x01
	versionEncryptedHeader = 0x02

	pubKeyLen = 65 // uncompressed SEC1 P-256 point
	headerLen = pubKeyLen + 4 + 4

	headerNonceLen     = 12
	encHeaderLen       = headerNonceLen + headerLen + aeadTagLen
	plainPrefixLen     = 1 + headerLen
	encryptedPrefixLen = 1 + encHeaderLen
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

// sealBody appends the body ciphertext of message key mk to dst. The nonce lives in the State:
// a local would escape through the cipher.AEAD interface and cost an allocation.
func (s *State) sealBody(dst []byte, mk *[keyLen]byte, plaintext, ad []byte) ([]byte, error) {
	var key [aeadKeyLen]byte
	key, s.nonceBuf = messageAEADKeys(&s.zeroSalt, mk)
	defer clear(key[:])
	aead, err := newAESGCM(key[:])
	if err != nil {
		return nil, err
	}
	return aead.Seal(dst, s.nonceBuf[:], plaintext, ad), nil
}

// openBody appends the plaintext of body under message key mk to dst.
func (s *State) openBody(dst []byte, mk *[keyLen]byte, body, ad []byte) ([]byte, error) {
	var key [aeadKeyLen]byte
	key, s.nonceBuf = messageAEADKeys(&s.zeroSalt, mk)
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
