package keys

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// reader consumes a byte slice front to back. The first failure sticks: later reads return zero
// values and err reports the first problem, so decoders check once at the end of a section.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("truncated %s: %w", what, ErrMalformed)
	}
}

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(what)
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(what string) byte {
	b := r.bytes(1, what)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u32(what string) uint32 {
	b := r.bytes(4, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// created reads a creation time: uint64 Unix seconds, which must fit an int64, 0 for unknown
// (the form checks come from the constructors and parsers that use it).
func (r *reader) created(what string) time.Time {
	b := r.bytes(8, what+" creation time")
	if b == nil {
		return time.Time{}
	}
	v := binary.BigEndian.Uint64(b)
	if v > math.MaxInt64 && r.err == nil {
		r.err = fmt.Errorf("%s creation time %d: %w", what, v, ErrMalformed)
	}
	if v == 0 {
		return time.Time{} // unknown: a key migrated from a version 1 store
	}
	return time.Unix(int64(v), 0)
}

// appendCreated appends a creation time as uint64 Unix seconds, the zero time as 0.
func appendCreated(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.BigEndian.AppendUint64(b, 0)
	}
	return binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
}

// bool reads one byte that must be 0 or 1, so every value has exactly one encoding.
func (r *reader) bool(what string) bool {
	v := r.u8(what)
	if v > 1 && r.err == nil {
		r.err = fmt.Errorf("%s flag %d: %w", what, v, ErrMalformed)
	}
	return v == 1
}

// signature reads a one-byte length and at most MaxSignatureSize bytes of signature.
func (r *reader) signature(what string) []byte {
	n := int(r.u8(what + " signature length"))
	if r.err == nil && (n == 0 || n > MaxSignatureSize) {
		r.err = fmt.Errorf("%s signature of %d bytes: %w", what, n, ErrMalformed)
		return nil
	}
	return r.bytes(n, what+" signature")
}

// done reports the sticky error, or trailing bytes if the input was not fully consumed.
func (r *reader) done(what string) error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d trailing bytes after %s: %w", len(r.b), what, ErrMalformed)
	}
	return nil
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendSignature(b, sig []byte) []byte {
	return append(append(b, byte(len(sig))), sig...)
}
