package keys_test

import (
	"bytes"
	"testing"

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
