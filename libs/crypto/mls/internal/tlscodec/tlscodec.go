// Package tlscodec encodes and decodes the TLS presentation language with
// the QUIC-style variable-length vector headers of MLS ([RFC 9420, Section 2.1]).
//
// A [Writer] appends big-endian integers and length-prefixed vectors to a
// byte slice. A [Reader] consumes them with a sticky error: after the first
// failure every read returns a zero value and [Reader.Err] reports the
// failure, so decoders read a whole struct and check once. Every vector
// length is checked against the bytes that remain before anything is sliced
// or allocated.
//
// [RFC 9420, Section 2.1]: https://www.rfc-editor.org/rfc/rfc9420#section-2.1
package tlscodec

import (
	"errors"
	"fmt"
)

// MaxVarint is the largest length a variable-length header can carry
// (2^30 - 1): MLS forbids the 8-byte QUIC form.
const MaxVarint = 1<<30 - 1

// Errors returned (wrapped) by a Reader. Test for them with errors.Is.
var (
	// ErrShort means the input ended inside a field.
	ErrShort = errors.New("tls: input too short")
	// ErrVarintPrefix means a length header used the reserved 0b11 prefix.
	ErrVarintPrefix = errors.New("tls: invalid variable-length integer prefix")
	// ErrVarintNotMinimal means a length header used more bytes than needed.
	ErrVarintNotMinimal = errors.New("tls: variable-length integer not minimally encoded")
	// ErrTrailing means bytes remained after a complete value.
	ErrTrailing = errors.New("tls: trailing bytes")
	// ErrInvalid means a field held a value its type does not allow, such as
	// an optional presence byte other than 0 or 1.
	ErrInvalid = errors.New("tls: invalid value")
	// ErrTooLarge means a vector or list exceeds a limit set by the decoder.
	ErrTooLarge = errors.New("tls: value exceeds limit")
)

// Writer appends TLS-encoded values to a byte slice.
type Writer struct {
	b []byte
}

// NewWriter returns a Writer that appends to buf (which may be nil).
func NewWriter(buf []byte) *Writer { return &Writer{b: buf} }

// Bytes returns the encoded bytes.
func (w *Writer) Bytes() []byte { return w.b }

// Uint8 appends v.
func (w *Writer) Uint8(v uint8) { w.b = append(w.b, v) }

// Uint16 appends v big-endian.
func (w *Writer) Uint16(v uint16) { w.b = append(w.b, byte(v>>8), byte(v)) }

// Uint32 appends v big-endian.
func (w *Writer) Uint32(v uint32) {
	w.b = append(w.b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Uint64 appends v big-endian.
func (w *Writer) Uint64(v uint64) {
	w.Uint32(uint32(v >> 32))
	w.Uint32(uint32(v))
}

// Bool appends v as one byte.
func (w *Writer) Bool(v bool) {
	if v {
		w.Uint8(1)
	} else {
		w.Uint8(0)
	}
}

// Raw appends b with no length prefix.
func (w *Writer) Raw(b []byte) { w.b = append(w.b, b...) }

// Varint appends n as a minimal variable-length integer. It panics if n
// exceeds MaxVarint: callers never build values that large.
func (w *Writer) Varint(n int) {
	w.b = AppendVarint(w.b, n)
}

// Opaque appends b as opaque<V>.
func (w *Writer) Opaque(b []byte) {
	w.Varint(len(b))
	w.Raw(b)
}

// Vector appends the bytes written by fill, prefixed by their varint length.
func (w *Writer) Vector(fill func(*Writer)) {
	// The length is known only after fill runs, so the body is shifted right
	// to make room for its header.
	start := len(w.b)
	fill(w)
	n := len(w.b) - start
	hdr := AppendVarint(nil, n)
	w.b = append(w.b, hdr...)
	copy(w.b[start+len(hdr):], w.b[start:start+n])
	copy(w.b[start:], hdr)
}

// AppendVarint appends n as a minimal variable-length integer (RFC 9420,
// Section 2.1.2). It panics if n is negative or exceeds MaxVarint.
func AppendVarint(b []byte, n int) []byte {
	switch {
	case n < 0 || n > MaxVarint:
		panic(fmt.Sprintf("tlscodec: varint %d out of range", n))
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, 0x40|byte(n>>8), byte(n))
	default:
		return append(b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// Reader consumes TLS-encoded values from a byte slice. Slices it returns
// alias the input.
type Reader struct {
	b   []byte
	err error
}

// NewReader returns a Reader over b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err returns the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Fail records err unless an error is already recorded; decoders use it for
// semantic checks so that the first failure wins.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.b) }

// Empty reports whether every byte has been read without error.
func (r *Reader) Empty() bool { return r.err == nil && len(r.b) == 0 }

// Finish returns the recorded error, or ErrTrailing if bytes remain.
func (r *Reader) Finish() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes", ErrTrailing, len(r.b))
	}
	return nil
}

func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = ErrShort
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Uint8 reads one byte.
func (r *Reader) Uint8() uint8 {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// Uint16 reads a big-endian uint16.
func (r *Reader) Uint16() uint16 {
	b := r.take(2)
	if b == nil {
		return 0
	}
	return uint16(b[0])<<8 | uint16(b[1])
}

// Uint32 reads a big-endian uint32.
func (r *Reader) Uint32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Uint64 reads a big-endian uint64.
func (r *Reader) Uint64() uint64 {
	hi := r.Uint32()
	return uint64(hi)<<32 | uint64(r.Uint32())
}

// Bool reads one byte that must be 0 or 1.
func (r *Reader) Bool() bool {
	switch r.Uint8() {
	case 0:
		return false
	case 1:
		return true
	default:
		r.Fail(fmt.Errorf("%w: boolean", ErrInvalid))
		return false
	}
}

// Raw reads exactly n bytes.
func (r *Reader) Raw(n int) []byte { return r.take(n) }

// Varint reads a variable-length integer, rejecting the 0b11 prefix and
// non-minimal encodings.
func (r *Reader) Varint() int {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = ErrShort
		return 0
	}
	n, size, err := ParseVarint(r.b)
	if err != nil {
		r.err = err
		return 0
	}
	r.b = r.b[size:]
	return n
}

// ParseVarint decodes the variable-length integer at the start of b and
// returns it with the number of bytes it used.
func ParseVarint(b []byte) (n, size int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrShort
	}
	size = 1 << (b[0] >> 6)
	if size == 8 {
		return 0, 0, ErrVarintPrefix
	}
	if len(b) < size {
		return 0, 0, ErrShort
	}
	n = int(b[0] & 0x3f)
	for _, c := range b[1:size] {
		n = n<<8 | int(c)
	}
	if (size == 2 && n < 1<<6) || (size == 4 && n < 1<<14) {
		return 0, 0, ErrVarintNotMinimal
	}
	return n, size, nil
}

// Opaque reads opaque<V>. The length is checked against the remaining input
// before slicing; the result aliases the input.
func (r *Reader) Opaque() []byte {
	n := r.Varint()
	if r.err != nil {
		return nil
	}
	return r.take(n)
}

// OpaqueMax reads opaque<V> and fails with ErrTooLarge beyond max bytes.
func (r *Reader) OpaqueMax(max int) []byte {
	v := r.Opaque()
	if len(v) > max {
		r.Fail(fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(v), max))
		return nil
	}
	return v
}

// Vector reads a varint-prefixed vector and returns a Reader over its body.
// The caller reads elements until the sub-reader is empty.
func (r *Reader) Vector() *Reader {
	body := r.Opaque()
	return &Reader{b: body, err: r.err}
}

// Each reads a varint-prefixed vector and calls elem for each element until
// the body is consumed. At most max elements are read (ErrTooLarge beyond).
// An element that fails stops the loop; its error becomes r's error.
func (r *Reader) Each(max int, elem func(*Reader)) {
	sub := r.Vector()
	for i := 0; sub.err == nil && len(sub.b) > 0; i++ {
		if i >= max {
			sub.Fail(fmt.Errorf("%w: more than %d elements", ErrTooLarge, max))
			break
		}
		before := len(sub.b)
		elem(sub)
		if sub.err == nil && len(sub.b) == before {
			// An element that consumes nothing would loop forever.
			sub.Fail(fmt.Errorf("%w: empty element", ErrInvalid))
		}
	}
	r.Fail(sub.err)
}

// Optional reads the presence byte of optional<T>.
func (r *Reader) Optional() bool { return r.Bool() }
