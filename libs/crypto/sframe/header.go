package sframe

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// MaxHeaderSize is the largest encoded SFrame header: one config byte and
// eight bytes each for KID and CTR.
const MaxHeaderSize = 17

// Header is the cleartext SFrame header ([RFC 9605, Section 4.3]): the key
// id that selects the key and the counter that forms the nonce. A selective
// forwarding unit may read it; it is authenticated but not encrypted.
//
// [RFC 9605, Section 4.3]: https://www.rfc-editor.org/rfc/rfc9605#section-4.3
type Header struct {
	KeyID   uint64
	Counter uint64
}

// Len returns the size of the encoded header.
func (h Header) Len() int {
	return 1 + extendedLen(h.KeyID) + extendedLen(h.Counter)
}

// Append appends the encoded header to dst and returns the extended slice.
// Values below 8 sit in the config byte; larger ones follow it as minimal
// big-endian integers, KID first.
func (h Header) Append(dst []byte) []byte {
	kidLen, ctrLen := extendedLen(h.KeyID), extendedLen(h.Counter)
	config := byte(0)
	if kidLen == 0 {
		config |= byte(h.KeyID) << 4
	} else {
		config |= 0x80 | byte(kidLen-1)<<4
	}
	if ctrLen == 0 {
		config |= byte(h.Counter)
	} else {
		config |= 0x08 | byte(ctrLen-1)
	}
	dst = append(dst, config)
	dst = appendMinimal(dst, h.KeyID, kidLen)
	return appendMinimal(dst, h.Counter, ctrLen)
}

// ParseHeader decodes the header at the start of frame and returns it with
// its encoded length. It is strict: an extended field holding a value below 8
// or with a leading zero byte is rejected with [ErrNonMinimalHeader], so that
// every (KID, CTR) pair has exactly one encoding. A frame too short for the
// lengths its config byte announces is rejected with [ErrTruncated].
func ParseHeader(frame []byte) (Header, int, error) {
	if len(frame) == 0 {
		return Header{}, 0, fmt.Errorf("sframe: empty frame: %w", ErrTruncated)
	}
	config := frame[0]
	n := 1
	kid, n, err := parseField(frame, n, config>>4, "key id")
	if err != nil {
		return Header{}, 0, err
	}
	ctr, n, err := parseField(frame, n, config&0x0f, "counter")
	if err != nil {
		return Header{}, 0, err
	}
	return Header{KeyID: kid, Counter: ctr}, n, nil
}

// parseField decodes one 4-bit field of the config byte (the X|K or Y|C
// nibble) and any extended bytes it announces, starting at frame[off].
func parseField(frame []byte, off int, nibble byte, what string) (uint64, int, error) {
	if nibble&0x08 == 0 {
		return uint64(nibble), off, nil
	}
	size := int(nibble&0x07) + 1
	if len(frame)-off < size {
		return 0, 0, fmt.Errorf("sframe: header %s needs %d bytes, %d left: %w", what, size, len(frame)-off, ErrTruncated)
	}
	field := frame[off : off+size]
	if field[0] == 0 {
		return 0, 0, fmt.Errorf("sframe: header %s has a leading zero byte: %w", what, ErrNonMinimalHeader)
	}
	var v uint64
	for _, b := range field {
		v = v<<8 | uint64(b)
	}
	if v < 8 {
		return 0, 0, fmt.Errorf("sframe: header %s %d fits the config byte: %w", what, v, ErrNonMinimalHeader)
	}
	return v, off + size, nil
}

// extendedLen returns how many bytes follow the config byte for v: none when
// v fits in the 3-bit field, else its minimal big-endian length.
func extendedLen(v uint64) int {
	if v < 8 {
		return 0
	}
	return (bits.Len64(v) + 7) / 8
}

func appendMinimal(dst []byte, v uint64, size int) []byte {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return append(dst, buf[8-size:]...)
}
