package suite

import (
	"bytes"
	"errors"
	"testing"
)

func TestUnsupportedSuite(t *testing.T) {
	for _, id := range []ID{0, 8, 0x004C, 0x004E, 0x647A, 0xffff} {
		if _, err := New(id); !errors.Is(err, ErrUnsupportedSuite) {
			t.Errorf("New(%d) = %v, want ErrUnsupportedSuite", id, err)
		}
	}
}

func TestRoundTripsEverySuite(t *testing.T) {
	for _, id := range Supported() {
		s, err := New(id)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub, err := s.GenerateSignatureKey()
		if err != nil {
			t.Fatalf("suite %d: generate: %v", id, err)
		}
		sig, err := s.SignWithLabel(priv, "L", []byte("content"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.VerifyWithLabel(pub, "L", []byte("content"), sig); err != nil {
			t.Errorf("suite %d: verify: %v", id, err)
		}
		if err := s.VerifyWithLabel(pub, "L", []byte("other"), sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("suite %d: wrong content verified: %v", id, err)
		}
		if err := s.VerifyWithLabel(pub[:len(pub)-1], "L", []byte("content"), sig); err == nil {
			t.Errorf("suite %d: truncated public key accepted", id)
		}

		// DeriveKeyPair is deterministic and its key opens what its public
		// key seals, including through the exporter used by external joins.
		ikm := bytes.Repeat([]byte{byte(id)}, s.HashSize())
		hpriv, hpub, err := s.DeriveKeyPair(ikm)
		if err != nil {
			t.Fatalf("suite %d: derive: %v", id, err)
		}
		hpriv2, hpub2, _ := s.DeriveKeyPair(ikm)
		if !bytes.Equal(hpriv, hpriv2) || !bytes.Equal(hpub, hpub2) {
			t.Errorf("suite %d: DeriveKeyPair not deterministic", id)
		}
		enc, secret, err := s.ExportSender(hpub, "ctx", s.HashSize())
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ExportReceiver(hpriv, enc, "ctx", s.HashSize())
		if err != nil || !bytes.Equal(got, secret) {
			t.Errorf("suite %d: export mismatch (err %v)", id, err)
		}
		if _, _, err := s.EncryptWithLabel(hpub[:3], "L", nil, nil); !errors.Is(err, ErrBadKey) {
			t.Errorf("suite %d: short hpke public key: %v, want ErrBadKey", id, err)
		}

		key := make([]byte, s.KeySize())
		nonce := make([]byte, s.NonceSize())
		ct, err := s.Seal(key, nonce, []byte("aad"), []byte("pt"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(key, nonce, []byte("bad"), ct); !errors.Is(err, ErrDecrypt) {
			t.Errorf("suite %d: wrong aad: %v, want ErrDecrypt", id, err)
		}
		if _, err := s.Seal(key[1:], nonce, nil, nil); !errors.Is(err, ErrBadKey) {
			t.Errorf("suite %d: short aead key: %v, want ErrBadKey", id, err)
		}
	}
}

func BenchmarkExpandWithLabel(b *testing.B) {
	s, _ := New(X25519AES128GCMSHA256Ed25519)
	secret := make([]byte, 32)
	for b.Loop() {
		s.ExpandWithLabel(secret, "key", nil, 16)
	}
}
