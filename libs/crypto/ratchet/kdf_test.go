package ratchet

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

func TestHMACMatchesStdlib(t *testing.T) {
	r := testStream(1)
	for size := range 200 {
		var key [keyLen]byte
		r.Read(key[:])
		msg := make([]byte, size)
		r.Read(msg)
		a, b := size/3, 2*size/3
		var got [32]byte
		var k hmacKey
		k.init(&key)
		k.sum(&got, msg[:a], msg[a:b], msg[b:])
		m := hmac.New(sha256.New, key[:])
		m.Write(msg)
		want := m.Sum(nil)
		if !bytes.Equal(got[:], want) {
			t.Fatalf("hmac of %d bytes = %x, want %x", size, got, want)
		}
		// Without saved states, hmacKey hashes the key blocks again: same MAC.
		k.innerLen, k.outerLen = 0, 0
		k.sum(&got, msg, nil, nil)
		if !bytes.Equal(got[:], want) {
			t.Fatalf("hmac without saved states of %d bytes = %x, want %x", size, got, want)
		}
	}
}

func TestHKDFMatchesStdlib(t *testing.T) {
	r := testStream(2)
	for _, info := range []string{infoInit, infoRoot, infoMessage, ""} {
		for outLen := 1; outLen <= 96; outLen++ {
			var salt [keyLen]byte
			r.Read(salt[:])
			ikm := make([]byte, outLen%50)
			r.Read(ikm)
			got := make([]byte, outLen)
			hkdfSHA256(got, &salt, ikm, info)
			want, err := hkdf.Key(sha256.New, ikm, salt[:], info, outLen)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("hkdf(info %q, %d bytes) = %x, want %x", info, outLen, got, want)
			}
		}
	}
}

// TestKDFCK pins KDF_CK to the specification's HMAC constants.
func TestKDFCK(t *testing.T) {
	var ck [keyLen]byte
	testStream(3).Read(ck[:])
	next, mk := kdfCK(&ck)
	for _, tc := range []struct {
		input byte
		got   [keyLen]byte
	}{{0x01, mk}, {0x02, next}} {
		m := hmac.New(sha256.New, ck[:])
		m.Write([]byte{tc.input})
		if want := m.Sum(nil); !bytes.Equal(tc.got[:], want) {
			t.Errorf("HMAC(ck, %#x) = %x, want %x", tc.input, tc.got, want)
		}
	}
}

// TestKDFRKPrefix checks that the plain-header KDF_RK (64 bytes) is the prefix of the header
// encryption variant's output, which lets one function serve both modes.
func TestKDFRKPrefix(t *testing.T) {
	var rk [keyLen]byte
	dh := make([]byte, 32)
	r := testStream(4)
	r.Read(rk[:])
	r.Read(dh)
	k := kdfRK(&rk, dh)
	want, err := hkdf.Key(sha256.New, dh, rk[:], infoRoot, 64)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(k.root[:], k.chain[:]...); !bytes.Equal(got, want) {
		t.Fatalf("KDF_RK = %x, want %x", got, want)
	}
}
