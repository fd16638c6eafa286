package sframe

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// hexBytes decodes the lower-case hex strings of the vector file.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type headerVector struct {
	KID     uint64   `json:"kid"`
	CTR     uint64   `json:"ctr"`
	Encoded hexBytes `json:"encoded"`
}

type aeadVector struct {
	CipherSuite CipherSuite `json:"cipher_suite"`
	Key         hexBytes    `json:"key"`
	EncKey      hexBytes    `json:"enc_key"`
	AuthKey     hexBytes    `json:"auth_key"`
	Nonce       hexBytes    `json:"nonce"`
	AAD         hexBytes    `json:"aad"`
	PT          hexBytes    `json:"pt"`
	CT          hexBytes    `json:"ct"`
}

type sframeVector struct {
	CipherSuite     CipherSuite `json:"cipher_suite"`
	KID             uint64      `json:"kid"`
	CTR             uint64      `json:"ctr"`
	BaseKey         hexBytes    `json:"base_key"`
	SFrameKeyLabel  hexBytes    `json:"sframe_key_label"`
	SFrameSaltLabel hexBytes    `json:"sframe_salt_label"`
	SFrameSecret    hexBytes    `json:"sframe_secret"`
	SFrameKey       hexBytes    `json:"sframe_key"`
	SFrameSalt      hexBytes    `json:"sframe_salt"`
	Metadata        hexBytes    `json:"metadata"`
	Nonce           hexBytes    `json:"nonce"`
	AAD             hexBytes    `json:"aad"`
	PT              hexBytes    `json:"pt"`
	CT              hexBytes    `json:"ct"`
}

type rfcVectors struct {
	Header     []headerVector `json:"header"`
	AESCTRHMAC []aeadVector   `json:"aes_ctr_hmac"`
	SFrame     []sframeVector `json:"sframe"`
}

// draftVectors are the sframe-wg vectors for the AES-256-CTR suites of
// draft-barnes-sframe-iana-256, from two files.
type draftVectors struct {
	AES256CTRHMAC       []aeadVector   `json:"aes_256_ctr_hmac"`
	SFrameAES256CTRHMAC []sframeVector `json:"sframe_aes_256_ctr_hmac"`
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func loadRFCVectors(t testing.TB) rfcVectors {
	t.Helper()
	var v rfcVectors
	readJSON(t, "testdata/rfc9605-test-vectors.json", &v)
	if len(v.Header) != 289 || len(v.AESCTRHMAC) != 3 || len(v.SFrame) != 5 {
		t.Fatalf("vector file has %d/%d/%d cases, want 289/3/5", len(v.Header), len(v.AESCTRHMAC), len(v.SFrame))
	}
	return v
}

func loadDraftVectors(t testing.TB) draftVectors {
	t.Helper()
	var v draftVectors
	readJSON(t, "testdata/sframe-wg-main-test-vectors.json", &v)
	readJSON(t, "testdata/sframe-wg-main-test-vectors-aes256.json", &v)
	if len(v.AES256CTRHMAC) != 3 || len(v.SFrameAES256CTRHMAC) != 3 {
		t.Fatalf("draft vectors have %d/%d cases, want 3/3", len(v.AES256CTRHMAC), len(v.SFrameAES256CTRHMAC))
	}
	return v
}

func TestRFCHeaderVectors(t *testing.T) {
	for _, tc := range loadRFCVectors(t).Header {
		h := Header{KeyID: tc.KID, Counter: tc.CTR}
		if got := h.Append(nil); !bytes.Equal(got, tc.Encoded) {
			t.Errorf("encode kid=%d ctr=%d = %x, want %x", tc.KID, tc.CTR, got, []byte(tc.Encoded))
		}
		if h.Len() != len(tc.Encoded) {
			t.Errorf("Len kid=%d ctr=%d = %d, want %d", tc.KID, tc.CTR, h.Len(), len(tc.Encoded))
		}
		got, n, err := ParseHeader(tc.Encoded)
		if err != nil || got != h || n != len(tc.Encoded) {
			t.Errorf("ParseHeader(%x) = %+v, %d, %v; want %+v, %d", []byte(tc.Encoded), got, n, err, h, len(tc.Encoded))
		}
	}
}

func TestRFCAESCTRHMACVectors(t *testing.T) {
	checkAEADVectors(t, loadRFCVectors(t).AESCTRHMAC)
}

func TestDraftAES256CTRHMACVectors(t *testing.T) {
	checkAEADVectors(t, loadDraftVectors(t).AES256CTRHMAC)
}

func checkAEADVectors(t *testing.T, vectors []aeadVector) {
	for _, tc := range vectors {
		t.Run(tc.CipherSuite.String(), func(t *testing.T) {
			p, err := tc.CipherSuite.check(true)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tc.Key[:p.nka], tc.EncKey) || !bytes.Equal(tc.Key[p.nka:], tc.AuthKey) {
				t.Fatal("key split does not match enc_key || auth_key")
			}
			a, err := newCTRHMAC(p, tc.Key)
			if err != nil {
				t.Fatal(err)
			}
			// The AAD goes in as one piece and as two, as the header and
			// metadata of a frame would.
			for _, split := range []int{0, len(tc.AAD) / 2} {
				ct := a.seal(nil, tc.Nonce, tc.PT, tc.AAD[:split], tc.AAD[split:])
				if !bytes.Equal(ct, tc.CT) {
					t.Fatalf("seal = %x, want %x", ct, []byte(tc.CT))
				}
				pt, err := a.open(nil, tc.Nonce, tc.CT, tc.AAD[:split], tc.AAD[split:])
				if err != nil || !bytes.Equal(pt, tc.PT) {
					t.Fatalf("open = %x, %v; want %x", pt, err, []byte(tc.PT))
				}
			}
		})
	}
}

func TestRFCSFrameVectors(t *testing.T) {
	checkSFrameVectors(t, loadRFCVectors(t).SFrame)
}

func TestDraftAES256CTRHMACSFrameVectors(t *testing.T) {
	checkSFrameVectors(t, loadDraftVectors(t).SFrameAES256CTRHMAC)
}

func checkSFrameVectors(t *testing.T, vectors []sframeVector) {
	for _, tc := range vectors {
		t.Run(tc.CipherSuite.String(), func(t *testing.T) {
			p, err := tc.CipherSuite.check(true)
			if err != nil {
				t.Fatal(err)
			}
			if got := deriveLabel(keyLabelPrefix, tc.KID, tc.CipherSuite); got != string(tc.SFrameKeyLabel) {
				t.Errorf("key label = %x, want %x", got, []byte(tc.SFrameKeyLabel))
			}
			if got := deriveLabel(saltLabelPrefix, tc.KID, tc.CipherSuite); got != string(tc.SFrameSaltLabel) {
				t.Errorf("salt label = %x, want %x", got, []byte(tc.SFrameSaltLabel))
			}
			secret, key, salt, err := deriveKeyAndSalt(p, tc.CipherSuite, tc.KID, tc.BaseKey)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(secret, tc.SFrameSecret) || !bytes.Equal(key, tc.SFrameKey) || !bytes.Equal(salt, tc.SFrameSalt) {
				t.Errorf("derived secret/key/salt = %x/%x/%x, want %x/%x/%x", secret, key, salt,
					[]byte(tc.SFrameSecret), []byte(tc.SFrameKey), []byte(tc.SFrameSalt))
			}

			s, err := NewShortTagSender(tc.CipherSuite, tc.KID, tc.BaseKey)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.key.formNonce(tc.CTR); !bytes.Equal(got, tc.Nonce) {
				t.Errorf("nonce = %x, want %x", got, []byte(tc.Nonce))
			}
			hdr := Header{KeyID: tc.KID, Counter: tc.CTR}.Append(nil)
			if got := append(hdr, tc.Metadata...); !bytes.Equal(got, tc.AAD) {
				t.Errorf("aad = %x, want %x", got, []byte(tc.AAD))
			}
			if err := s.SetNextCounter(tc.CTR); err != nil {
				t.Fatal(err)
			}
			ct, err := s.Protect(nil, tc.Metadata, tc.PT)
			if err != nil || !bytes.Equal(ct, tc.CT) {
				t.Fatalf("Protect = %x, %v; want %x", ct, err, []byte(tc.CT))
			}
			if s.NextCounter() != tc.CTR+1 {
				t.Errorf("NextCounter after Protect = %d, want %d", s.NextCounter(), tc.CTR+1)
			}

			r, err := NewShortTagReceiver(tc.CipherSuite, DefaultReplayWindow)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.AddKey(tc.KID, tc.BaseKey); err != nil {
				t.Fatal(err)
			}
			pt, err := r.Unprotect(nil, tc.Metadata, tc.CT)
			if err != nil || !bytes.Equal(pt, tc.PT) {
				t.Fatalf("Unprotect = %x, %v; want %x", pt, err, []byte(tc.PT))
			}
		})
	}
}
