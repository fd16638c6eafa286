package outbox

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeEntry: stored entries decode or fail with ErrMalformedEntry, and what
// decodes encodes back to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(0, []byte("payload")))
	f.Add(encodeEntry(1_800_000_000_000_000_000, nil))
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		at, payload, err := decodeEntry(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedEntry) {
				t.Fatalf("error %v is not ErrMalformedEntry", err)
			}
			return
		}
		if !bytes.Equal(encodeEntry(at, payload), b) {
			t.Fatalf("round trip changed %x", b)
		}
	})
}

func TestDecodeEntryRejects(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 0}, {0, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 0x80, 0, 0, 0, 0, 0, 0, 0}} {
		if _, _, err := decodeEntry(b); !errors.Is(err, ErrMalformedEntry) {
			t.Errorf("decodeEntry(%x): %v, want ErrMalformedEntry", b, err)
		}
	}
}
