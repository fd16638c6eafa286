package tikv

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds decode arbitrary stored bytes: it must never panic, must refuse every
// value without the header with errCorrupt, and must give back exactly what encode wrapped.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{valueHeader})
	f.Add([]byte{valueHeader, 'v'})
	f.Add([]byte{1, 'v'})
	f.Fuzz(func(t *testing.T, stored []byte) {
		v, err := decode([]byte("k"), stored)
		if len(stored) == 0 || stored[0] != valueHeader {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decode(%x) = %x, %v; want errCorrupt", stored, v, err)
			}
			return
		}
		if err != nil || !bytes.Equal(v, stored[1:]) {
			t.Fatalf("decode(%x) = %x, %v", stored, v, err)
		}
		if len(stored) > 1 && &v[0] == &stored[1] {
			t.Fatal("decode returned a slice of its input, not a copy")
		}
		if back, err := decode(nil, encode(v)); err != nil || !bytes.Equal(back, v) {
			t.Fatalf("decode(encode(%x)) = %x, %v", v, back, err)
		}
	})
}
