package presencestatus

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k := GenerateKey()
	for _, text := range []string{"", "in a meeting", strings.Repeat("é", MaxTextBytes/2)} {
		sealed, err := Seal(k, "bob", text)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) > MaxSealedSize || len(sealed) < MinSealedSize {
			t.Fatalf("sealed %d bytes, outside %d..%d", len(sealed), MinSealedSize, MaxSealedSize)
		}
		got, err := Open(k, "bob", sealed)
		if err != nil || got != text {
			t.Fatalf("Open = %q, %v; want %q", got, err, text)
		}
		if bytes.Contains(sealed, []byte("meeting")) {
			t.Fatal("sealed status contains the text")
		}
	}
}

func TestPaddingHidesLength(t *testing.T) {
	k := GenerateKey()
	a, _ := Seal(k, "bob", "a")
	b, _ := Seal(k, "bob", strings.Repeat("b", PadBlock-2))
	if len(a) != len(b) {
		t.Fatalf("1-byte and %d-byte texts seal to %d and %d bytes", PadBlock-2, len(a), len(b))
	}
}

func TestOpenRejects(t *testing.T) {
	k, other := GenerateKey(), GenerateKey()
	sealed, _ := Seal(k, "bob", "busy")
	flip := func(i int) []byte { s := bytes.Clone(sealed); s[i] ^= 1; return s }
	for name, c := range map[string]struct {
		key    *Key
		user   string
		sealed []byte
		want   error
	}{
		"other account":  {k, "mallory", sealed, ErrOpen},
		"other key":      {other, "bob", sealed, ErrWrongKey},
		"flipped tag":    {k, "bob", flip(len(sealed) - 1), ErrOpen},
		"flipped nonce":  {k, "bob", flip(6), ErrOpen},
		"bad version":    {k, "bob", flip(0), ErrVersion},
		"truncated":      {k, "bob", sealed[:len(sealed)-1], ErrMalformed},
		"empty":          {k, "bob", nil, ErrMalformed},
		"header only":    {k, "bob", sealed[:headerSize], ErrMalformed},
		"one block more": {k, "bob", append(bytes.Clone(sealed), make([]byte, PadBlock)...), ErrOpen},
	} {
		if _, err := Open(c.key, c.user, c.sealed); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
	if _, err := Seal(k, "bob", strings.Repeat("x", MaxTextBytes+1)); !errors.Is(err, ErrTextTooLong) {
		t.Errorf("long text: %v", err)
	}
	if _, err := Seal(k, "bob", "\xff"); !errors.Is(err, ErrTextInvalid) {
		t.Errorf("invalid utf-8: %v", err)
	}
	if _, err := NewKey(1, make([]byte, 31)); err == nil {
		t.Error("31-byte key accepted")
	}
}

func TestMaxSealedSize(t *testing.T) {
	sealed, err := Seal(GenerateKey(), "bob", strings.Repeat("x", MaxTextBytes))
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != MaxSealedSize {
		t.Fatalf("longest text seals to %d bytes, MaxSealedSize is %d", len(sealed), MaxSealedSize)
	}
	// The API's limit on SetStatusRequest.sealed_status (320 bytes) must hold it.
	if MaxSealedSize > 320 {
		t.Fatalf("MaxSealedSize %d exceeds the API limit 320", MaxSealedSize)
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := NewKey(7, bytes.Repeat([]byte{1}, KeySize))
	s, _ := Seal(k, "bob", "hello")
	f.Add(s)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		text, err := Open(k, "bob", b)
		if err != nil {
			return
		}
		if len(text) > MaxTextBytes {
			t.Fatalf("opened %d bytes", len(text))
		}
		if _, err := KeyID(b); err != nil {
			t.Fatalf("opened what KeyID rejects: %v", err)
		}
	})
}
