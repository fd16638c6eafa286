package media

import (
	"bytes"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/blobstore"
)

// FuzzCapability feeds arbitrary tokens to the parser: it never panics, accepts nothing
// without the key, and what it accepts re-encodes to the same bytes.
func FuzzCapability(f *testing.F) {
	key := bytes.Repeat([]byte{3}, CapabilityKeySize)
	c := &capability{ID: [16]byte{1}, Blob: blobstore.Digest{2}, Expires: time.Unix(1_800_000_000, 0), Owner: "alice", Audience: "bob"}
	good := c.marshal(key)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{capVersion})
	f.Fuzz(func(t *testing.T, token []byte) {
		got, err := parseCapability(token, key)
		if err != nil {
			return
		}
		if !bytes.Equal(got.marshal(key), token) {
			t.Fatal("an accepted token does not re-encode to itself")
		}
		if !bytes.Equal(token, good) {
			t.Fatal("a token the server never made was accepted")
		}
	})
}

func TestCapabilityCodec(t *testing.T) {
	key := bytes.Repeat([]byte{3}, CapabilityKeySize)
	c := &capability{ID: [16]byte{1}, Blob: blobstore.Digest{2}, Expires: time.Unix(1_800_000_000, 0), Owner: "alice"}
	tok := c.marshal(key)
	got, err := parseCapability(tok, key)
	if err != nil || got.Owner != "alice" || got.Audience != "" || got.Blob != c.Blob || !got.Expires.Equal(c.Expires) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := range tok {
		bad := bytes.Clone(tok)
		bad[i] ^= 0x40
		if _, err := parseCapability(bad, key); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	if _, err := parseCapability(tok, bytes.Repeat([]byte{4}, CapabilityKeySize)); err == nil {
		t.Fatal("accepted under another key")
	}
	if len(tok) > 1024 || MaxCapabilitySize > 1024 {
		t.Fatalf("tokens of %d bytes exceed the API's 1024", MaxCapabilitySize)
	}
}
