package envelope

import (
	"encoding/binary"
	"fmt"
)

// Envelope sizes. Every envelope is exactly one of the bucket sizes MinSize << k for k = 0..9:
// 512 B, 1 KiB, 2 KiB, ... 256 KiB. 256 B is not on the ladder because the fixed overhead and a
// certificate do not fit in it.
const (
	// MinSize is the smallest envelope.
	MinSize = 512
	// MaxSize is the largest envelope; Open rejects anything longer before any work.
	MaxSize = 256 << 10
	// MaxContentSize is the largest content Seal accepts: what fits in a MaxSize envelope
	// beside the largest possible certificate.
	MaxContentSize = MaxSize - envelopeOverhead - innerFixedSize - MaxCertificateSize
)

// Inner plaintext layout, padded with zeros to the bucket:
//
//	certificate length 2 bytes big endian
//	certificate        sender certificate bytes
//	content type       1 byte
//	content length     4 bytes big endian
//	content
//	padding            zeros
const innerFixedSize = 2 + 1 + 4

// ContentType says what the content of an envelope is, so the recipient knows which protocol
// decodes it.
type ContentType uint8

// Content types. The zero value is invalid so a forgotten field cannot pass.
const (
	// ContentPreKeyMessage is a 1:1 session message that also carries the key agreement.
	ContentPreKeyMessage ContentType = 1
	// ContentSessionMessage is a 1:1 Double Ratchet message.
	ContentSessionMessage ContentType = 2
	// ContentReceipt is a delivery or read receipt.
	ContentReceipt ContentType = 3
	// ContentTyping is a typing indicator.
	ContentTyping ContentType = 4
	// ContentMLS is an MLS message (application, handshake or Welcome).
	ContentMLS ContentType = 5
)

func (t ContentType) valid() bool { return t >= ContentPreKeyMessage && t <= ContentMLS }

// String names the content type for logs.
func (t ContentType) String() string {
	switch t {
	case ContentPreKeyMessage:
		return "prekey-message"
	case ContentSessionMessage:
		return "session-message"
	case ContentReceipt:
		return "receipt"
	case ContentTyping:
		return "typing"
	case ContentMLS:
		return "mls"
	}
	return fmt.Sprintf("content-type(%d)", uint8(t))
}

// bucketSize returns the smallest envelope size that holds an inner plaintext of innerLen
// bytes. Callers bound innerLen so the result is at most MaxSize.
func bucketSize(innerLen int) int {
	size := MinSize
	for size < innerLen+envelopeOverhead {
		size <<= 1
	}
	return size
}

func isBucketSize(n int) bool {
	return n >= MinSize && n <= MaxSize && n&(n-1) == 0
}

// encodeInner lays out and pads the inner plaintext for its bucket.
func encodeInner(cert []byte, ct ContentType, content []byte) ([]byte, error) {
	if !ct.valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedContentType, uint8(ct))
	}
	if len(content) > MaxContentSize {
		return nil, fmt.Errorf("%w: content has %d bytes, max %d", ErrTooLarge, len(content), MaxContentSize)
	}
	// cert was parsed, so it is at most MaxCertificateSize and the envelope fits in MaxSize.
	size := bucketSize(innerFixedSize + len(cert) + len(content))
	inner := make([]byte, 0, size-envelopeOverhead)
	inner = binary.BigEndian.AppendUint16(inner, uint16(len(cert)))
	inner = append(inner, cert...)
	inner = append(inner, byte(ct))
	inner = binary.BigEndian.AppendUint32(inner, uint32(len(content)))
	inner = append(inner, content...)
	return inner[:cap(inner)], nil
}

// decodeInner splits an inner plaintext, rejecting bad lengths, unknown content types and
// non-zero padding. The returned slices alias inner.
func decodeInner(inner []byte) (cert []byte, ct ContentType, content []byte, err error) {
	if len(inner) < innerFixedSize {
		return nil, 0, nil, fmt.Errorf("%w: inner plaintext of %d bytes", ErrMalformed, len(inner))
	}
	certLen := int(binary.BigEndian.Uint16(inner))
	if certLen > MaxCertificateSize || certLen > len(inner)-innerFixedSize {
		return nil, 0, nil, fmt.Errorf("%w: certificate length %d", ErrMalformed, certLen)
	}
	cert, rest := inner[2:2+certLen], inner[2+certLen:]
	ct = ContentType(rest[0])
	if !ct.valid() {
		return nil, 0, nil, fmt.Errorf("%w: %d", ErrUnsupportedContentType, uint8(ct))
	}
	contentLen := uint64(binary.BigEndian.Uint32(rest[1:5]))
	rest = rest[5:]
	if contentLen > uint64(len(rest)) {
		return nil, 0, nil, fmt.Errorf("%w: content length %d exceeds %d remaining bytes", ErrMalformed, contentLen, len(rest))
	}
	content, padding := rest[:contentLen], rest[contentLen:]
	for _, b := range padding {
		if b != 0 {
			return nil, 0, nil, fmt.Errorf("%w: non-zero padding", ErrMalformed)
		}
	}
	return cert, ct, content, nil
}
