package ratchet

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"testing"
)

// testStream is a deterministic byte stream standing in for crypto/rand in tests.
func testStream(seed uint64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return mathrand.NewChaCha8(s)
}

// testKey draws a P-256 key from r by rejection sampling, as State.generateKey does.
func testKey(tb testing.TB, r io.Reader) *ecdh.PrivateKey {
	tb.Helper()
	var seed [32]byte
	for {
		if _, err := io.ReadFull(r, seed[:]); err != nil {
			tb.Fatal(err)
		}
		if k, err := ecdh.P256().NewPrivateKey(seed[:]); err == nil {
			return k
		}
	}
}

// newTestPair returns an initiator and a responder sharing a PQXDH secret, all keys drawn from
// a stream seeded with seed.
func newTestPair(tb testing.TB, cfg Config, seed uint64) (alice, bob *State) {
	tb.Helper()
	r := testStream(seed)
	sk := make([]byte, 32)
	if _, err := io.ReadFull(r, sk); err != nil {
		tb.Fatal(err)
	}
	bobKey := testKey(tb, r)
	alice, err := newInitiator(sk, bobKey.PublicKey(), cfg, r)
	if err != nil {
		tb.Fatal(err)
	}
	bob, err = newResponder(sk, bobKey, cfg, r)
	if err != nil {
		tb.Fatal(err)
	}
	return alice, bob
}

func mustMarshal(tb testing.TB, s *State) []byte {
	tb.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustEncrypt(tb testing.TB, s *State, plaintext, ad []byte) []byte {
	tb.Helper()
	msg, err := s.Encrypt(nil, plaintext, ad)
	if err != nil {
		tb.Fatalf("encrypt: %v", err)
	}
	return msg
}

func mustDecrypt(tb testing.TB, s *State, msg, ad, want []byte) {
	tb.Helper()
	got, err := s.Decrypt(nil, msg, ad)
	if err != nil {
		tb.Fatalf("decrypt: %v", err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("decrypt = %q, want %q", got, want)
	}
}

// mustReject checks that Decrypt fails with wantErr (any error when nil) and leaves s unchanged.
func mustReject(tb testing.TB, s *State, msg, ad []byte, wantErr error) {
	tb.Helper()
	before := mustMarshal(tb, s)
	out, err := s.Decrypt(nil, msg, ad)
	if err == nil {
		tb.Fatalf("decrypt accepted a bad message (plaintext %q)", out)
	}
	if wantErr != nil && !errors.Is(err, wantErr) {
		tb.Fatalf("decrypt error = %v, want %v", err, wantErr)
	}
	if out != nil {
		tb.Fatalf("decrypt returned output %x with error %v", out, err)
	}
	if after := mustMarshal(tb, s); !bytes.Equal(before, after) {
		tb.Fatalf("failed decrypt (%v) changed the state", err)
	}
}

// bothModes runs f with and without header encryption.
func bothModes(t *testing.T, f func(t *testing.T, cfg Config)) {
	for _, he := range []bool{false, true} {
		name := "plain-header"
		if he {
			name = "encrypted-header"
		}
		t.Run(name, func(t *testing.T) { f(t, Config{HeaderEncryption: he}) })
	}
}
