package embedded

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// FuzzDecodeValue feeds arbitrary bytes to the decoder of stored message values: it
// never panics, rejects what it cannot decode with msgstore.ErrCorrupt, and what it
// decodes encodes back to the same bytes.
func FuzzDecodeValue(f *testing.F) {
	m := msgstore.Message{ID: msgstore.ID{1, 2}, Kind: 3, Body: []byte("body"), Timestamp: time.Unix(5, 6), Expiry: time.Unix(7, 8)}
	f.Add(appendValue(nil, &m))
	f.Add(appendValue(nil, &msgstore.Message{}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := decodeValue(v)
		if err != nil {
			if !errors.Is(err, msgstore.ErrCorrupt) {
				t.Fatalf("error %v does not wrap msgstore.ErrCorrupt", err)
			}
			return
		}
		if again := appendValue(nil, &got); !bytes.Equal(again, v) {
			t.Fatalf("decoded %x, encoded back %x", v, again)
		}
	})
}

// FuzzDecodeExpiryKey does the same for expiry keys.
func FuzzDecodeExpiryKey(f *testing.F) {
	f.Add(expiryKey(42, msgstore.Inbox{UserID: "u", DeviceID: "d"}, 7))
	f.Add([]byte{prefixExpiry, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, k []byte) {
		in, seq, err := decodeExpiryKey(k)
		if err != nil {
			if !errors.Is(err, msgstore.ErrCorrupt) {
				t.Fatalf("error %v does not wrap msgstore.ErrCorrupt", err)
			}
			return
		}
		if again := expiryKey(int64(uint64FromKey(k)), in, seq); !bytes.Equal(again, k) {
			t.Fatalf("decoded %x, encoded back %x", k, again)
		}
	})
}

func uint64FromKey(k []byte) uint64 {
	var n uint64
	for _, b := range k[1:9] {
		n = n<<8 | uint64(b)
	}
	return n
}
