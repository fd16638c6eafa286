package wire

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"testing"
)

// loadMessageVectors reads messages.json once for all tests and fuzz targets.
var loadMessageVectors = sync.OnceValues(func() ([]map[string][]byte, error) {
	f, err := os.Open("../../testdata/messages.json.gz")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	var raw []map[string]string
	if err := json.NewDecoder(z).Decode(&raw); err != nil {
		return nil, err
	}
	out := make([]map[string][]byte, 0, len(raw))
	for _, c := range raw {
		m := map[string][]byte{}
		for k, v := range c {
			if m[k], err = hex.DecodeString(v); err != nil {
				return nil, err
			}
		}
		out = append(out, m)
	}
	return out, nil
})

// messageVectors returns the first n cases of messages.json.
func messageVectors(tb testing.TB, n int) []map[string][]byte {
	tb.Helper()
	v, err := loadMessageVectors()
	if err != nil {
		tb.Fatal(err)
	}
	return v[:n]
}

// fuzzRoundTrip seeds f with the given vector fields and checks that any
// input that decodes re-encodes to itself: every encoding is canonical.
func fuzzRoundTrip[T Marshaler](f *testing.F, fields []string, dec func([]byte) (T, error)) {
	for _, c := range messageVectors(f, 7) {
		for _, field := range fields {
			f.Add(c[field])
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := dec(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if out := Encode(m); !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, out)
		}
	})
}

func FuzzDecodeMLSMessage(f *testing.F) {
	fuzzRoundTrip(f, []string{"mls_welcome", "mls_group_info", "mls_key_package",
		"public_message_application", "public_message_proposal", "public_message_commit", "private_message"},
		DecodeMLSMessage)
}

func FuzzDecodeWelcome(f *testing.F) {
	fuzzRoundTrip(f, nil, DecodeWelcome)
}

func FuzzDecodeGroupInfo(f *testing.F) {
	fuzzRoundTrip(f, nil, DecodeGroupInfo)
}

func FuzzDecodeKeyPackage(f *testing.F) {
	fuzzRoundTrip(f, []string{"add_proposal"}, DecodeKeyPackage)
}

func FuzzDecodeRatchetTree(f *testing.F) {
	fuzzRoundTrip(f, []string{"ratchet_tree"}, DecodeRatchetTree)
}

func FuzzDecodeCommit(f *testing.F) {
	fuzzRoundTrip(f, []string{"commit"}, DecodeCommit)
}

func FuzzDecodeProposal(f *testing.F) {
	fuzzRoundTrip(f, nil, DecodeProposal)
}

func FuzzDecodeGroupSecrets(f *testing.F) {
	fuzzRoundTrip(f, []string{"group_secrets"}, DecodeGroupSecrets)
}

// TestBareSeeds checks that the MLSMessage bodies in the vectors also decode
// as bare structures, so the bare fuzz targets start from valid inputs.
func TestBareSeeds(t *testing.T) {
	for _, c := range messageVectors(t, 7) {
		for field, want := range map[string]WireFormat{"mls_welcome": WireWelcome, "mls_group_info": WireGroupInfo, "mls_key_package": WireKeyPackage} {
			m, err := DecodeMLSMessage(c[field])
			if err != nil || m.WireFormat != want {
				t.Fatalf("%s: %v", field, err)
			}
			body := c[field][4:]
			var err2 error
			switch want {
			case WireWelcome:
				_, err2 = DecodeWelcome(body)
			case WireGroupInfo:
				_, err2 = DecodeGroupInfo(body)
			case WireKeyPackage:
				_, err2 = DecodeKeyPackage(body)
			}
			if err2 != nil {
				t.Errorf("bare %s: %v", field, err2)
			}
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	kp := messageVectors(t, 1)[0]["mls_key_package"]
	cases := map[string][]byte{
		"truncated":        kp[:len(kp)-1],
		"trailing":         append(append([]byte{}, kp...), 0),
		"bad version":      append([]byte{0, 2}, kp[2:]...),
		"bad wire format":  append([]byte{0, 1, 0, 9}, kp[4:]...),
		"bad length":       {0, 1, 0, 5, 0xc0},
		"oversized length": {0, 1, 0, 3, 0, 1, 0xbf, 0xff, 0xff, 0xff},
	}
	for name, in := range cases {
		if _, err := DecodeMLSMessage(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzDecodePrivateContent covers the decrypted body of a PrivateMessage,
// which a member decodes after authenticating the AEAD: the sender is a
// member, but may still be malicious.
func FuzzDecodePrivateContent(f *testing.F) {
	c := &FramedContent{ContentType: ContentApplication, ApplicationData: []byte("hi")}
	f.Add(uint8(ContentApplication), MarshalPrivateContent(c, &FramedContentAuthData{Signature: []byte{1, 2}}, 3))
	for _, v := range messageVectors(f, 3) {
		commit := v["commit"]
		f.Add(uint8(ContentCommit), append(append(append([]byte{}, commit...), 1, 7, 1, 8), 0, 0))
	}
	f.Fuzz(func(t *testing.T, ct uint8, in []byte) {
		c := &FramedContent{ContentType: ContentType(ct)}
		auth, err := DecodePrivateContent(in, c)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		// Re-encoding with the padding that was stripped gives the input.
		out := MarshalPrivateContent(c, auth, 0)
		if !bytes.Equal(out, in[:len(out)]) {
			t.Fatalf("re-encoding differs")
		}
		for _, p := range in[len(out):] {
			if p != 0 {
				t.Fatal("non-zero padding accepted")
			}
		}
	})
}
