package sframe

import (
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// CipherSuite identifies an SFrame cipher suite from the IANA registry
// ([RFC 9605, Section 8.1]).
//
// [RFC 9605, Section 8.1]: https://www.rfc-editor.org/rfc/rfc9605#section-8.1
type CipherSuite uint16

// The cipher suites of [RFC 9605, Section 4.5]. AES_128_GCM_SHA256_128 is the
// one to use unless a peer needs something else: it is the fastest and the
// only one whose tag is not truncated.
//
// The suites with a 32-bit tag (AES_128_CTR_HMAC_SHA256_32 here,
// AES_256_CTR_HMAC_SHA512_32 below) are off unless asked for with
// NewShortTagSender and NewShortTagReceiver: a forged frame passes with
// probability 2^-32, and every frame a receiver checks is a free try, so an
// on-path attacker sending 100,000 frames a second expects one to pass in
// about 12 hours (RFC 9605, Section 7.5).
//
// [RFC 9605, Section 4.5]: https://www.rfc-editor.org/rfc/rfc9605#section-4.5
const (
	AES_128_CTR_HMAC_SHA256_80 CipherSuite = 0x0001
	AES_128_CTR_HMAC_SHA256_64 CipherSuite = 0x0002
	AES_128_CTR_HMAC_SHA256_32 CipherSuite = 0x0003
	AES_128_GCM_SHA256_128     CipherSuite = 0x0004
	AES_256_GCM_SHA512_128     CipherSuite = 0x0005
)

// The 256-bit AES-CTR plus HMAC suites of [draft-barnes-sframe-iana-256],
// not in RFC 9605. The draft may still change; prefer AES_256_GCM_SHA512_128
// for 256-bit keys.
//
// [draft-barnes-sframe-iana-256]: https://datatracker.ietf.org/doc/draft-barnes-sframe-iana-256/
const (
	AES_256_CTR_HMAC_SHA512_80 CipherSuite = 0x0006
	AES_256_CTR_HMAC_SHA512_64 CipherSuite = 0x0007
	AES_256_CTR_HMAC_SHA512_32 CipherSuite = 0x0008
)

// suiteParams are the constants of the table in RFC 9605, Section 4.5.
type suiteParams struct {
	name string
	hash crypto.Hash
	nk   int // AEAD key size: the derived sframe_key
	nka  int // AES key size inside nk (CTR suites only; nk for GCM suites)
	nt   int // tag size
}

// nonceSize is Nn: every RFC 9605 suite uses 96-bit nonces.
const nonceSize = 12

func (s CipherSuite) params() (suiteParams, bool) {
	switch s {
	case AES_128_CTR_HMAC_SHA256_80:
		return suiteParams{"AES_128_CTR_HMAC_SHA256_80", crypto.SHA256, 48, 16, 10}, true
	case AES_128_CTR_HMAC_SHA256_64:
		return suiteParams{"AES_128_CTR_HMAC_SHA256_64", crypto.SHA256, 48, 16, 8}, true
	case AES_128_CTR_HMAC_SHA256_32:
		return suiteParams{"AES_128_CTR_HMAC_SHA256_32", crypto.SHA256, 48, 16, 4}, true
	case AES_128_GCM_SHA256_128:
		return suiteParams{"AES_128_GCM_SHA256_128", crypto.SHA256, 16, 16, 16}, true
	case AES_256_GCM_SHA512_128:
		return suiteParams{"AES_256_GCM_SHA512_128", crypto.SHA512, 32, 32, 16}, true
	case AES_256_CTR_HMAC_SHA512_80:
		return suiteParams{"AES_256_CTR_HMAC_SHA512_80", crypto.SHA512, 96, 32, 10}, true
	case AES_256_CTR_HMAC_SHA512_64:
		return suiteParams{"AES_256_CTR_HMAC_SHA512_64", crypto.SHA512, 96, 32, 8}, true
	case AES_256_CTR_HMAC_SHA512_32:
		return suiteParams{"AES_256_CTR_HMAC_SHA512_32", crypto.SHA512, 96, 32, 4}, true
	}
	return suiteParams{}, false
}

// String returns the registry name of the suite.
func (s CipherSuite) String() string {
	if p, ok := s.params(); ok {
		return p.name
	}
	return fmt.Sprintf("CipherSuite(0x%04x)", uint16(s))
}

// KeySize returns Nk, the size of the AEAD key. MLS-based keying exports a
// base key of this size (RFC 9605, Section 5.2).
func (s CipherSuite) KeySize() int {
	p, _ := s.params()
	return p.nk
}

// TagSize returns Nt, the number of bytes the authentication tag adds to
// each frame.
func (s CipherSuite) TagSize() int {
	p, _ := s.params()
	return p.nt
}

// minTagSize is the shortest tag NewSender and NewReceiver accept.
const minTagSize = 8

// check returns the parameters of s, or ErrUnsupportedSuite, or
// ErrShortTag for a 32-bit tag unless shortTag says it was asked for.
func (s CipherSuite) check(shortTag bool) (suiteParams, error) {
	p, ok := s.params()
	if !ok {
		return suiteParams{}, fmt.Errorf("sframe: cipher suite 0x%04x: %w", uint16(s), ErrUnsupportedSuite)
	}
	if p.nt < minTagSize && !shortTag {
		return suiteParams{}, fmt.Errorf("sframe: %v has a %d-byte tag: %w", s, p.nt, ErrShortTag)
	}
	return p, nil
}

func (p suiteParams) newHash() func() hash.Hash {
	if p.hash == crypto.SHA512 {
		return sha512.New
	}
	return sha256.New
}
