package mlskeystest

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// mlsSuiteHash is the KDF hash of each MLS cipher suite (RFC 9420, Section
// 17.1).
var mlsSuiteHash = map[int]crypto.Hash{
	1: crypto.SHA256, 2: crypto.SHA256, 3: crypto.SHA256, 4: crypto.SHA512,
	5: crypto.SHA512, 6: crypto.SHA512, 7: crypto.SHA384,
}

// TestExporterMatchesMLSVectors checks Export against the exporter values of
// the MLS working group's key-schedule vectors, every suite and epoch.
func TestExporterMatchesMLSVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/key-schedule.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct {
		CipherSuite int `json:"cipher_suite"`
		Epochs      []struct {
			ExporterSecret string `json:"exporter_secret"`
			Exporter       struct {
				Label   string `json:"label"`
				Context string `json:"context"`
				Length  int    `json:"length"`
				Secret  string `json:"secret"`
			} `json:"exporter"`
		} `json:"epochs"`
	}
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, v := range vectors {
		hash, ok := mlsSuiteHash[v.CipherSuite]
		if !ok {
			t.Fatalf("no hash for MLS suite %d", v.CipherSuite)
		}
		for i, e := range v.Epochs {
			secret := mustHex(t, e.ExporterSecret)
			// The vector's label is a string (the exporter's label is text)
			// that happens to look like hex: it is used as is, while the
			// context is hex-encoded bytes.
			g := NewGroup(hash, secret, uint64(i), 0, 1)
			got, err := g.Export(e.Exporter.Label, mustHex(t, e.Exporter.Context), e.Exporter.Length)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(t, e.Exporter.Secret); !bytes.Equal(got, want) {
				t.Errorf("suite %d epoch %d: Export = %x, want %x", v.CipherSuite, i, got, want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no exporter vectors checked")
	}
}

func TestAppendVectorLengths(t *testing.T) {
	for _, tc := range []struct {
		n      int
		prefix []byte
	}{{0, []byte{0}}, {63, []byte{63}}, {64, []byte{0x40, 64}}, {16383, []byte{0x7f, 0xff}}, {16384, []byte{0x80, 0, 0x40, 0}}} {
		got, err := appendVector(nil, make([]byte, tc.n))
		if err != nil || !bytes.Equal(got[:len(tc.prefix)], tc.prefix) || len(got) != len(tc.prefix)+tc.n {
			t.Errorf("appendVector(%d bytes) prefix %x, %v; want %x", tc.n, got[:min(len(got), 4)], err, tc.prefix)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
