package tlscodec

import (
	"bytes"
	"errors"
	"testing"
)

func TestVarintRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 255, 16383, 16384, 1 << 20, MaxVarint} {
		b := AppendVarint(nil, n)
		got, size, err := ParseVarint(b)
		if err != nil || got != n || size != len(b) {
			t.Errorf("varint %d: got %d size %d err %v, encoded % x", n, got, size, err, b)
		}
	}
}

func TestVarintRejects(t *testing.T) {
	cases := []struct {
		in   []byte
		want error
	}{
		{nil, ErrShort},
		{[]byte{0x40}, ErrShort},
		{[]byte{0x80, 0, 0}, ErrShort},
		{[]byte{0xc0, 0, 0, 0, 0, 0, 0, 1}, ErrVarintPrefix},
		{[]byte{0x40, 0x3f}, ErrVarintNotMinimal},
		{[]byte{0x80, 0, 0x3f, 0xff}, ErrVarintNotMinimal},
	}
	for _, c := range cases {
		if _, _, err := ParseVarint(c.in); !errors.Is(err, c.want) {
			t.Errorf("ParseVarint(% x) = %v, want %v", c.in, err, c.want)
		}
	}
}

func TestWriterReader(t *testing.T) {
	w := NewWriter(nil)
	w.Uint8(7)
	w.Uint16(0x0102)
	w.Uint32(0x03040506)
	w.Uint64(0x0708090a0b0c0d0e)
	w.Bool(true)
	w.Opaque(bytes.Repeat([]byte{0xaa}, 100))
	w.Vector(func(w *Writer) {
		for i := range 3 {
			w.Opaque([]byte{byte(i)})
		}
	})
	r := NewReader(w.Bytes())
	if r.Uint8() != 7 || r.Uint16() != 0x0102 || r.Uint32() != 0x03040506 || r.Uint64() != 0x0708090a0b0c0d0e || !r.Bool() {
		t.Fatal("integers did not round-trip")
	}
	if v := r.Opaque(); len(v) != 100 || v[99] != 0xaa {
		t.Fatalf("opaque: got %d bytes", len(v))
	}
	var elems [][]byte
	r.Each(10, func(r *Reader) { elems = append(elems, r.Opaque()) })
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
	if len(elems) != 3 || elems[2][0] != 2 {
		t.Fatalf("vector elements: %x", elems)
	}
}

func TestLargeVectorHeader(t *testing.T) {
	body := bytes.Repeat([]byte{1}, 20000)
	w := NewWriter([]byte{0xff})
	w.Vector(func(w *Writer) { w.Raw(body) })
	r := NewReader(w.Bytes()[1:])
	if got := r.Opaque(); !bytes.Equal(got, body) || r.Finish() != nil {
		t.Fatalf("large vector: %d bytes, err %v", len(got), r.Finish())
	}
}

func TestReaderErrors(t *testing.T) {
	// A length that claims more than remains fails before slicing.
	r := NewReader([]byte{0x80, 0x10, 0, 0, 1, 2})
	if r.Opaque() != nil || !errors.Is(r.Err(), ErrShort) {
		t.Errorf("oversized length: err %v", r.Err())
	}
	r = NewReader([]byte{2})
	if r.Bool(); !errors.Is(r.Err(), ErrInvalid) {
		t.Errorf("bool 2: err %v", r.Err())
	}
	r = NewReader([]byte{1, 2})
	r.Uint8()
	if !errors.Is(r.Finish(), ErrTrailing) {
		t.Errorf("trailing: err %v", r.Finish())
	}
	r = NewReader([]byte{3, 1, 1, 1})
	r.Each(2, func(r *Reader) { r.Uint8() })
	if !errors.Is(r.Err(), ErrTooLarge) {
		t.Errorf("too many elements: err %v", r.Err())
	}
	r = NewReader([]byte{3, 1, 2, 3})
	if r.OpaqueMax(2); !errors.Is(r.Err(), ErrTooLarge) {
		t.Errorf("opaque over limit: err %v", r.Err())
	}
	// Sticky: after an error, reads return zero values.
	r = NewReader(nil)
	r.Uint32()
	if r.Uint8() != 0 || !errors.Is(r.Err(), ErrShort) {
		t.Errorf("sticky error lost: %v", r.Err())
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{0x40, 0x40})
	f.Add([]byte{0x03, 0x01, 0x02, 0x03})
	f.Add([]byte{0xbf, 0xff, 0xff, 0xff})
	f.Add([]byte{0xc0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(in)
		var got [][]byte
		r.Each(1<<20, func(r *Reader) { got = append(got, r.Opaque()) })
		if r.Err() != nil {
			return
		}
		// Whatever decodes re-encodes to the same prefix.
		w := NewWriter(nil)
		w.Vector(func(w *Writer) {
			for _, g := range got {
				w.Opaque(g)
			}
		})
		if n := len(in) - r.Len(); !bytes.Equal(w.Bytes(), in[:n]) {
			t.Fatalf("re-encoding differs: % x vs % x", w.Bytes(), in[:n])
		}
	})
}
