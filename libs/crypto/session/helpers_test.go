package session_test

import (
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
	"github.com/guardyn/guardyn/libs/crypto/session"
)

// pair is a session set up between Alice (initiator) and Bob (responder) up to the point where
// both have exchanged one message, so both send normal messages.
type pair struct {
	alice, bob *session.Session
	aliceID    *keys.Identity
	bobDevice  *keystest.Device
}

func mustEncrypt(t testing.TB, s *session.Session, plaintext string) []byte {
	t.Helper()
	m, err := s.Encrypt(nil, []byte(plaintext))
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return m
}

func mustDecrypt(t testing.TB, s *session.Session, msg []byte, want string) {
	t.Helper()
	got, err := s.Decrypt(nil, msg)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if string(got) != want {
		t.Fatalf("Decrypt = %q, want %q", got, want)
	}
}

// newPair runs Initiate, one prekey message, Accept and one reply.
func newPair(t testing.TB, cfg session.Config) *pair {
	t.Helper()
	p := &pair{aliceID: keystest.Identity("alice"), bobDevice: keystest.NewDevice("bob")}
	var err error
	if p.alice, err = session.Initiate(p.aliceID, p.bobDevice.Bundle, cfg); err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	first := mustEncrypt(t, p.alice, "first")
	var pt []byte
	if p.bob, pt, err = session.Accept(p.bobDevice.Identity, p.bobDevice.Store, first, p.aliceID.Public(), cfg); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if string(pt) != "first" {
		t.Fatalf("Accept plaintext %q", pt)
	}
	mustDecrypt(t, p.alice, mustEncrypt(t, p.bob, "reply"), "reply")
	return p
}

// restart round-trips a session through MarshalBinary and Unmarshal.
func restart(t testing.TB, s *session.Session) *session.Session {
	t.Helper()
	enc, err := s.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	back, err := session.Unmarshal(enc)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	return back
}

var configs = map[string]session.Config{
	"plain headers":     {},
	"header encryption": {HeaderEncryption: true},
}
