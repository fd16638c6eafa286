package keys_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
)

func FuzzParseBundle(f *testing.F) {
	dev := keystest.NewDevice("fuzz")
	for _, b := range []*keys.Bundle{dev.Bundle, dev.LastResortBundle} {
		enc, err := b.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := keys.ParseBundle(data)
		if err != nil {
			return
		}
		enc, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatal("accepted bundle does not re-encode to its input")
		}
		_ = b.Verify()
	})
}

func FuzzParsePreKeyStore(f *testing.F) {
	enc, err := keystest.NewDevice("fuzz").Store.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add(enc[:100])
	f.Add(append([]byte{1}, make([]byte, 24)...))
	f.Add([]byte{1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := keys.ParsePreKeyStore(data)
		if err != nil {
			return
		}
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if data[0] == 1 {
			// A version 1 store is read once and written back as version 2.
			again, err := keys.ParsePreKeyStore(enc)
			if err != nil {
				t.Fatalf("migrated store does not parse: %v", err)
			}
			if data, err = again.MarshalBinary(); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(enc, data) {
			t.Fatal("accepted store does not re-encode to its input")
		}
	})
}

func FuzzParseIdentity(f *testing.F) {
	enc, err := keystest.Identity("fuzz").MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add(keystest.Identity("fuzz").Public().Bytes())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if id, err := keys.ParseIdentity(data); err == nil {
			again, _ := id.MarshalBinary()
			if !bytes.Equal(again, data) {
				t.Fatal("identity does not re-encode to its input")
			}
		}
		if pk, err := keys.ParseIdentityKey(data); err == nil && !bytes.Equal(pk.Bytes(), data) {
			t.Fatal("identity key does not re-encode to its input")
		}
	})
}

// FuzzParsePreKeyPublic covers the per-field parsers the server uses on uploaded prekeys.
func FuzzParsePreKeyPublic(f *testing.F) {
	dev := keystest.NewDevice("fuzz")
	spk, kem := dev.Bundle.SignedPreKey, dev.LastResortBundle.KEMPreKey
	f.Add(uint32(1), spk.Created.Unix(), spk.Key.Bytes(), spk.Signature, false)
	f.Add(uint32(2), kem.Created.Unix(), kem.Key.Bytes(), kem.Signature, true)
	f.Add(uint32(0), int64(0), []byte{4}, []byte{}, false)
	f.Fuzz(func(t *testing.T, id uint32, created int64, key, sig []byte, lastResort bool) {
		if p, err := keys.ParseSignedPreKeyPublic(id, time.Unix(created, 0), key, sig); err == nil {
			if !bytes.Equal(p.Key.Bytes(), key) {
				t.Fatal("signed prekey does not re-encode")
			}
			_ = p.Verify(dev.Identity.Public())
		}
		if p, err := keys.ParseOneTimePreKeyPublic(id, key); err == nil && !bytes.Equal(p.Key.Bytes(), key) {
			t.Fatal("one-time prekey does not re-encode")
		}
		if p, err := keys.ParseKEMPreKeyPublic(id, time.Unix(created, 0), key, lastResort, sig); err == nil {
			if !bytes.Equal(p.Key.Bytes(), key) {
				t.Fatal("kem prekey does not re-encode")
			}
			_ = p.Verify(dev.Identity.Public())
		}
	})
}
