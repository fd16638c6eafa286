package pqxdh

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/keys"
)

// Header is the PQXDH part of the initiator's first messages: who she is, her ephemeral key, which
// of the responder's prekeys she used and the ML-KEM ciphertext.
type Header struct {
	IdentityKey      *keys.IdentityKey // IK_A
	EphemeralKey     *ecdh.PublicKey   // EK_A
	SignedPreKeyID   uint32
	HasOneTimePreKey bool // whether DH4 was computed
	OneTimePreKeyID  uint32
	KEMPreKeyID      uint32
	KEMCiphertext    []byte // CT, mlkem.CiphertextSize768 bytes
}

const (
	// headerVersion is the first byte of an encoded Header: protocol version 2, with KB.
	headerVersion = 2
	// legacyHeaderVersion is protocol version 1, without KB, refused.
	legacyHeaderVersion = 1
	// MaxHeaderSize bounds an encoded Header.
	MaxHeaderSize = 1 + 2*keys.PublicKeySize + 4 + 1 + 4 + 4 + 2 + mlkem.CiphertextSize768
)

// AppendBinary appends the header's encoding (version 2) to b:
//
//	u8 version | IK_A (65) | EK_A (65) | u32 spk id | u8 has opk | [u32 opk id] | u32 kem id
//	| u16 ct len | ct
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	if h.IdentityKey == nil || h.EphemeralKey == nil {
		return nil, fmt.Errorf("header without identity or ephemeral key: %w", ErrMalformed)
	}
	if len(h.KEMCiphertext) != mlkem.CiphertextSize768 {
		return nil, fmt.Errorf("kem ciphertext of %d bytes: %w", len(h.KEMCiphertext), ErrMissingKEMCiphertext)
	}
	b = append(b, headerVersion)
	b, _ = h.IdentityKey.AppendBinary(b)
	b = append(b, h.EphemeralKey.Bytes()...)
	b = binary.BigEndian.AppendUint32(b, h.SignedPreKeyID)
	if h.HasOneTimePreKey {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint32(b, h.OneTimePreKeyID)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, h.KEMPreKeyID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.KEMCiphertext)))
	return append(b, h.KEMCiphertext...), nil
}

// MarshalBinary returns the header's encoding; see [Header.AppendBinary].
func (h *Header) MarshalBinary() ([]byte, error) {
	return h.AppendBinary(make([]byte, 0, MaxHeaderSize))
}

// ParseHeader decodes a header, validating both public keys. It returns
// [ErrMissingKEMCiphertext] for a header with an empty ciphertext and [ErrMalformed] for any other
// bad length.
func ParseHeader(data []byte) (*Header, error) {
	const fixed = 1 + 2*keys.PublicKeySize + 4 + 1 // up to and including the has-opk flag
	if len(data) == 0 {
		return nil, fmt.Errorf("empty header: %w", ErrMalformed)
	}
	switch data[0] {
	case headerVersion:
	case legacyHeaderVersion:
		return nil, fmt.Errorf("header version 1 predates the KEM binding of PQXDH v2; the initiator must start again: %w", ErrUnsupportedVersion)
	default:
		return nil, fmt.Errorf("header version %d: %w", data[0], ErrUnsupportedVersion)
	}
	if len(data) < fixed {
		return nil, fmt.Errorf("header of %d bytes: %w", len(data), ErrMalformed)
	}
	h := &Header{}
	var err error
	off := 1
	if h.IdentityKey, err = keys.ParseIdentityKey(data[off : off+keys.PublicKeySize]); err != nil {
		return nil, fmt.Errorf("header identity key: %w", err)
	}
	off += keys.PublicKeySize
	if h.EphemeralKey, err = ecdh.P256().NewPublicKey(data[off : off+keys.PublicKeySize]); err != nil {
		return nil, fmt.Errorf("header ephemeral key: %w: %v", keys.ErrInvalidKey, err)
	}
	off += keys.PublicKeySize
	h.SignedPreKeyID = binary.BigEndian.Uint32(data[off:])
	off += 4
	switch data[off] {
	case 0:
	case 1:
		h.HasOneTimePreKey = true
	default:
		return nil, fmt.Errorf("header one-time prekey flag %d: %w", data[off], ErrMalformed)
	}
	off++
	rest := 4 + 2
	if h.HasOneTimePreKey {
		rest += 4
	}
	if len(data) < off+rest {
		return nil, fmt.Errorf("header of %d bytes: %w", len(data), ErrMalformed)
	}
	if h.HasOneTimePreKey {
		h.OneTimePreKeyID = binary.BigEndian.Uint32(data[off:])
		off += 4
	}
	h.KEMPreKeyID = binary.BigEndian.Uint32(data[off:])
	off += 4
	ctLen := int(binary.BigEndian.Uint16(data[off:]))
	off += 2
	switch {
	case ctLen == 0:
		return nil, ErrMissingKEMCiphertext
	case ctLen != mlkem.CiphertextSize768:
		return nil, fmt.Errorf("kem ciphertext of %d bytes, want %d: %w", ctLen, mlkem.CiphertextSize768, ErrMalformed)
	case len(data) != off+ctLen:
		return nil, fmt.Errorf("header of %d bytes, want %d: %w", len(data), off+ctLen, ErrMalformed)
	}
	h.KEMCiphertext = append([]byte(nil), data[off:]...)
	return h, nil
}
