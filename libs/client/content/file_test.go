package content

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/filecrypt"
)

func sampleFile() Message {
	sum := sha256.Sum256([]byte("ciphertext"))
	return Message{ID: ID{9}, Kind: KindFile, Sent: time.UnixMilli(1_700_000_000_000).UTC(), From: "alice",
		File: &File{Blob: hex.EncodeToString(sum[:]), Key: bytes.Repeat([]byte{1}, filecrypt.KeySize), SHA256: sum[:],
			Size: filecrypt.CiphertextSize(1000), Name: "photo.jpg", Capability: []byte("cap")}}
}

func TestFileRoundTrip(t *testing.T) {
	m := sampleFile()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || got.File == nil || got.File.Name != "photo.jpg" || !bytes.Equal(got.File.Key, m.File.Key) ||
		got.File.Blob != m.File.Blob || got.File.Size != m.File.Size || !bytes.Equal(got.File.Capability, []byte("cap")) {
		t.Fatalf("round trip: %+v, %v", got.File, err)
	}
	if got.File.PlaintextSize() != 1000 {
		t.Fatalf("PlaintextSize = %d", got.File.PlaintextSize())
	}
}

// TestBadFiles: every field of a file reference is checked, and a name can never leave
// the directory the recipient saves into.
func TestBadFiles(t *testing.T) {
	cases := map[string]func(*Message){
		"short key":        func(m *Message) { m.File.Key = m.File.Key[:31] },
		"blob not hash":    func(m *Message) { m.File.Blob = strings.Repeat("a", 64) },
		"short hash":       func(m *Message) { m.File.SHA256 = m.File.SHA256[:31] },
		"impossible size":  func(m *Message) { m.File.Size = 5 },
		"negative size":    func(m *Message) { m.File.Size = -1 },
		"parent dir":       func(m *Message) { m.File.Name = ".." },
		"path":             func(m *Message) { m.File.Name = "../../.bashrc" },
		"hidden":           func(m *Message) { m.File.Name = ".bashrc" },
		"backslash":        func(m *Message) { m.File.Name = `a\b` },
		"control":          func(m *Message) { m.File.Name = "a\nb" },
		"empty name":       func(m *Message) { m.File.Name = "" },
		"long name":        func(m *Message) { m.File.Name = strings.Repeat("a", MaxFileNameSize+1) },
		"huge capability":  func(m *Message) { m.File.Capability = make([]byte, MaxCapabilitySize+3) },
		"file on a text":   func(m *Message) { m.Kind = KindText },
		"file with a body": func(m *Message) { m.Body = "hi" },
		"no file":          func(m *Message) { m.File = nil },
	}
	for name, mutate := range cases {
		m := sampleFile()
		f := *m.File
		m.File = &f
		mutate(&m)
		if _, err := Encode(m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Encode err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeFile(f *testing.F) {
	b, _ := Encode(sampleFile())
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil || m.File == nil {
			return
		}
		if !SafeFileName(m.File.Name) || len(m.File.Key) != filecrypt.KeySize {
			t.Fatalf("decoded an unsafe file reference %+v", m.File)
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded file does not re-encode: %v", err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatal(err)
		}
	})
}
