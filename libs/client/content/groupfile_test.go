package content

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func sampleGroupFile() *GroupFile {
	f := *sampleFile().File
	f.Capability = nil
	return &GroupFile{File: &f, Capabilities: map[string][]byte{"user-bob": []byte("cap-bob"), "user-carol": []byte("cap-carol")}}
}

// TestGroupFileRoundTrip: each member account finds its own capability, and an account
// the sender made none for (added later) gets none.
func TestGroupFileRoundTrip(t *testing.T) {
	b, err := json.Marshal(sampleGroupFile())
	if err != nil {
		t.Fatal(err)
	}
	var g GroupFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if g.File.Name != "photo.jpg" || !bytes.Equal(g.For("user-bob").Capability, []byte("cap-bob")) ||
		!bytes.Equal(g.For("user-carol").Capability, []byte("cap-carol")) || g.For("user-dave").Capability != nil {
		t.Fatalf("round trip: %+v", g)
	}
	if g.File.Capability != nil {
		t.Fatal("For changed the shared reference")
	}
}

// TestBadGroupFiles: a group file reference gets every check of a 1:1 one, and its
// capabilities are bounded in number and size, each under an account id.
func TestBadGroupFiles(t *testing.T) {
	cases := map[string]func(*GroupFile){
		"path name":       func(g *GroupFile) { g.File.Name = "../x" },
		"short key":       func(g *GroupFile) { g.File.Key = g.File.Key[:31] },
		"single cap":      func(g *GroupFile) { g.File.Capability = []byte("cap") },
		"empty account":   func(g *GroupFile) { g.Capabilities[""] = []byte("cap") },
		"long account":    func(g *GroupFile) { g.Capabilities[strings.Repeat("u", 256)] = []byte("cap") },
		"empty cap":       func(g *GroupFile) { g.Capabilities["user-dave"] = nil },
		"huge capability": func(g *GroupFile) { g.Capabilities["user-dave"] = make([]byte, MaxCapabilitySize+3) },
		"too many caps": func(g *GroupFile) {
			for i := range MaxGroupCapabilities {
				g.Capabilities[string(rune('a'+i%26))+strings.Repeat("x", i/26)] = []byte("c")
			}
		},
	}
	for name, mutate := range cases {
		g := sampleGroupFile()
		mutate(g)
		if _, err := json.Marshal(g); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Marshal err = %v, want ErrMalformed", name, err)
		}
	}
	// The decoder refuses the same, not only the encoder.
	for name, b := range map[string]string{
		"single cap": `{"blob":"x","cap":"Y2Fw","caps":{}}`,
		"not json":   `[`,
		"caps type":  `{"caps":5}`,
	} {
		var g GroupFile
		if err := g.UnmarshalJSON([]byte(b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Unmarshal err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzGroupFile(f *testing.F) {
	b, _ := json.Marshal(sampleGroupFile())
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var g GroupFile
		if err := g.UnmarshalJSON(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if !SafeFileName(g.File.Name) || len(g.Capabilities) > MaxGroupCapabilities {
			t.Fatalf("decoded an unsafe group file %+v", g)
		}
		again, err := json.Marshal(&g)
		if err != nil {
			t.Fatalf("decoded group file does not re-encode: %v", err)
		}
		var g2 GroupFile
		if err := json.Unmarshal(again, &g2); err != nil {
			t.Fatal(err)
		}
	})
}
