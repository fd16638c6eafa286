package session_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
	"github.com/guardyn/guardyn/libs/crypto/pqxdh"
	"github.com/guardyn/guardyn/libs/crypto/session"
)

func TestPreKeyMessagesUntilFirstReply(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			bob := keystest.NewDevice("bob")
			alice, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, cfg)
			if err != nil {
				t.Fatal(err)
			}
			m1 := mustEncrypt(t, alice, "one")
			alice = restart(t, alice) // still pending after a restart
			m2 := mustEncrypt(t, alice, "two")
			m3 := mustEncrypt(t, alice, "three")
			for i, m := range [][]byte{m1, m2, m3} {
				if !session.IsPreKeyMessage(m) {
					t.Fatalf("message %d is not a prekey message", i+1)
				}
			}
			// The third message arrives first and starts Bob's session; the others are late.
			bobSession, pt, err := session.Accept(bob.Identity, bob.Store, m3, keystest.Identity("alice").Public(), cfg)
			if err != nil || string(pt) != "three" {
				t.Fatalf("Accept: %q, %v", pt, err)
			}
			if !bobSession.RemoteIdentity().Equal(keystest.Identity("alice").Public()) {
				t.Fatal("wrong remote identity")
			}
			bobSession = restart(t, bobSession)
			mustDecrypt(t, bobSession, m1, "one")
			mustDecrypt(t, bobSession, m2, "two")
			// The one-time prekeys are gone: the same handshake cannot start a second session.
			if _, _, err := session.Accept(bob.Identity, bob.Store, m1, keystest.Identity("alice").Public(), cfg); !errors.Is(err, keys.ErrPreKeyUsed) {
				t.Fatalf("second Accept: got %v, want ErrPreKeyUsed", err)
			}
			if _, err := bobSession.Decrypt(nil, m2); !errors.Is(err, session.ErrDuplicate) {
				t.Fatalf("duplicate prekey message: got %v, want ErrDuplicate", err)
			}
			reply := mustEncrypt(t, bobSession, "reply")
			if session.IsPreKeyMessage(reply) {
				t.Fatal("responder sent a prekey message")
			}
			mustDecrypt(t, alice, reply, "reply")
			m4 := mustEncrypt(t, alice, "four")
			if session.IsPreKeyMessage(m4) {
				t.Fatal("initiator still sends prekey messages after a reply")
			}
			mustDecrypt(t, bobSession, m4, "four")
			if !alice.RemoteIdentity().Equal(bob.Identity.Public()) {
				t.Fatal("wrong remote identity at initiator")
			}
		})
	}
}

func TestLastResortBundle(t *testing.T) {
	bob := keystest.NewDevice("bob")
	alice, err := session.Initiate(keystest.Identity("alice"), bob.LastResortBundle, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	bobSession, pt, err := session.Accept(bob.Identity, bob.Store, mustEncrypt(t, alice, "hi"), keystest.Identity("alice").Public(), session.Config{})
	if err != nil || string(pt) != "hi" {
		t.Fatalf("Accept: %q, %v", pt, err)
	}
	if n, k := bob.Store.Counts(); n != 1 || k != 1 {
		t.Fatalf("one-time keys consumed by a last-resort handshake: %d, %d", n, k)
	}
	mustDecrypt(t, alice, mustEncrypt(t, bobSession, "hello"), "hello")
}

// TestEveryByteFlippedPreKeyMessage flips each byte of a first message: Accept must fail and
// leave the prekey store untouched, and the real message must still be accepted afterwards.
func TestEveryByteFlippedPreKeyMessage(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			bob := keystest.NewDevice("bob")
			alice, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, cfg)
			if err != nil {
				t.Fatal(err)
			}
			msg := mustEncrypt(t, alice, "a first message")
			before, _ := bob.Store.MarshalBinary()
			for i := range msg {
				bad := bytes.Clone(msg)
				bad[i] ^= 0x01
				if s, _, err := session.Accept(bob.Identity, bob.Store, bad, keystest.Identity("alice").Public(), cfg); err == nil || s != nil {
					t.Fatalf("byte %d flipped: Accept succeeded", i)
				}
			}
			after, _ := bob.Store.MarshalBinary()
			if !bytes.Equal(before, after) {
				t.Fatal("failed Accepts changed the prekey store")
			}
			if _, pt, err := session.Accept(bob.Identity, bob.Store, msg, keystest.Identity("alice").Public(), cfg); err != nil || string(pt) != "a first message" {
				t.Fatalf("genuine message after tampered ones: %q, %v", pt, err)
			}
		})
	}
}

// TestEveryByteFlippedNormalMessage flips each byte of a normal message: Decrypt must fail and
// leave the session able to decrypt the genuine message.
func TestEveryByteFlippedNormalMessage(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			p := newPair(t, cfg)
			// One message in the current chain and one that starts a new DH ratchet step.
			inChain := mustEncrypt(t, p.alice, "same chain")
			mustDecrypt(t, p.bob, inChain, "same chain")
			inChain = mustEncrypt(t, p.alice, "same chain again")
			for _, tc := range []struct {
				msg  []byte
				want string
			}{{inChain, "same chain again"}} {
				for i := range tc.msg {
					bad := bytes.Clone(tc.msg)
					bad[i] ^= 0x01
					if _, err := p.bob.Decrypt(nil, bad); err == nil {
						t.Fatalf("byte %d flipped: Decrypt succeeded", i)
					}
				}
				mustDecrypt(t, p.bob, tc.msg, tc.want)
			}
			newChain := mustEncrypt(t, p.bob, "new chain")
			for i := range newChain {
				bad := bytes.Clone(newChain)
				bad[i] ^= 0x80
				if _, err := p.alice.Decrypt(nil, bad); err == nil {
					t.Fatalf("byte %d flipped in a new-chain message: Decrypt succeeded", i)
				}
			}
			mustDecrypt(t, p.alice, newChain, "new chain")
		})
	}
}

func TestReplay(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			p := newPair(t, cfg)
			m := mustEncrypt(t, p.alice, "once")
			mustDecrypt(t, p.bob, m, "once")
			for range 3 {
				if _, err := p.bob.Decrypt(nil, m); !errors.Is(err, session.ErrDuplicate) {
					t.Fatalf("replay: got %v, want ErrDuplicate", err)
				}
			}
			p.bob = restart(t, p.bob)
			if _, err := p.bob.Decrypt(nil, m); !errors.Is(err, session.ErrDuplicate) {
				t.Fatalf("replay after restart: got %v, want ErrDuplicate", err)
			}
			// Out-of-order messages are each accepted exactly once.
			a, b := mustEncrypt(t, p.alice, "a"), mustEncrypt(t, p.alice, "b")
			mustDecrypt(t, p.bob, b, "b")
			mustDecrypt(t, p.bob, a, "a")
			if _, err := p.bob.Decrypt(nil, a); !errors.Is(err, session.ErrDuplicate) {
				t.Fatalf("replay of a skipped message: got %v, want ErrDuplicate", err)
			}
		})
	}
}

func TestWrongRecipient(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			bob := keystest.NewDevice("bob")
			alice, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, cfg)
			if err != nil {
				t.Fatal(err)
			}
			first := mustEncrypt(t, alice, "for Bob")
			// Eve holds prekeys under the same ids but derives another key.
			eve := keystest.NewDevice("eve")
			if _, _, err := session.Accept(eve.Identity, eve.Store, first, keystest.Identity("alice").Public(), cfg); !errors.Is(err, session.ErrDecrypt) {
				t.Fatalf("Accept by the wrong device: got %v, want ErrDecrypt", err)
			}
			if n, k := eve.Store.Counts(); n != 1 || k != 1 {
				t.Fatal("wrong recipient's store changed")
			}
			// A normal message of one session does not open in another session.
			p := newPair(t, cfg)
			carol := keystest.NewDevice("carol")
			other, err := session.Initiate(keystest.Identity("alice"), carol.Bundle, cfg)
			if err != nil {
				t.Fatal(err)
			}
			carolSession, _, err := session.Accept(carol.Identity, carol.Store, mustEncrypt(t, other, "x"), keystest.Identity("alice").Public(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := carolSession.Decrypt(nil, mustEncrypt(t, p.alice, "for Bob")); err == nil {
				t.Fatal("message for Bob decrypted in Carol's session")
			}
		})
	}
}

func TestSkipBeyondMaxSkip(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			cfg.MaxSkip, cfg.MaxSkippedKeys = 10, 20
			p := newPair(t, cfg)
			var msgs [][]byte
			for range 12 {
				msgs = append(msgs, mustEncrypt(t, p.alice, "m"))
			}
			if _, err := p.bob.Decrypt(nil, msgs[11]); !errors.Is(err, session.ErrTooManySkipped) {
				t.Fatalf("skip of 11: got %v, want ErrTooManySkipped", err)
			}
			mustDecrypt(t, p.bob, msgs[10], "m") // skips exactly 10
			for _, m := range msgs[:10] {
				mustDecrypt(t, p.bob, m, "m")
			}
			mustDecrypt(t, p.bob, msgs[11], "m")
		})
	}
}

func TestHandshakeMismatch(t *testing.T) {
	p := newPair(t, session.Config{})
	// Alice reinstalls and starts over against a fresh bundle of Bob's.
	fresh := keystest.NewDevice("bob")
	restarted, err := session.Initiate(p.aliceID, fresh.Bundle, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := mustEncrypt(t, restarted, "new session")
	if _, err := p.bob.Decrypt(nil, m); !errors.Is(err, session.ErrHandshakeMismatch) {
		t.Fatalf("prekey message of another handshake: got %v, want ErrHandshakeMismatch", err)
	}
	if _, err := p.alice.Decrypt(nil, m); !errors.Is(err, session.ErrHandshakeMismatch) {
		t.Fatalf("prekey message at an initiator: got %v, want ErrHandshakeMismatch", err)
	}
	if _, pt, err := session.Accept(fresh.Identity, fresh.Store, m, keystest.Identity("alice").Public(), session.Config{}); err != nil || string(pt) != "new session" {
		t.Fatalf("Accept of the new session: %q, %v", pt, err)
	}
}

func TestMessageFormatErrors(t *testing.T) {
	p := newPair(t, session.Config{})
	m := mustEncrypt(t, p.alice, "x")
	bob := keystest.NewDevice("bob")
	cases := map[string]struct {
		msg  []byte
		want error
	}{
		"empty":          {nil, session.ErrMalformed},
		"one byte":       {[]byte{1}, session.ErrMalformed},
		"version 2":      {append([]byte{2}, m[1:]...), session.ErrUnsupportedVersion},
		"unknown type":   {append([]byte{1, 3}, m[2:]...), session.ErrMalformed},
		"too large":      {make([]byte, session.MaxMessageSize+1), session.ErrTooLarge},
		"short prekey":   {[]byte{1, 1, 0}, session.ErrMalformed},
		"header overrun": {[]byte{1, 1, 0xff, 0xff, 1}, session.ErrMalformed},
	}
	for name, c := range cases {
		if _, err := p.bob.Decrypt(nil, c.msg); !errors.Is(err, c.want) {
			t.Errorf("Decrypt %s: got %v, want %v", name, err, c.want)
		}
		if _, _, err := session.Accept(bob.Identity, bob.Store, c.msg, keystest.Identity("alice").Public(), session.Config{}); !errors.Is(err, c.want) {
			t.Errorf("Accept %s: got %v, want %v", name, err, c.want)
		}
	}
	if _, _, err := session.Accept(bob.Identity, bob.Store, m, keystest.Identity("alice").Public(), session.Config{}); !errors.Is(err, session.ErrNotPreKeyMessage) {
		t.Errorf("Accept of a normal message: got %v, want ErrNotPreKeyMessage", err)
	}
	if _, err := p.alice.Encrypt(nil, make([]byte, session.MaxPlaintextSize+1)); !errors.Is(err, session.ErrTooLarge) {
		t.Errorf("oversized plaintext: got %v, want ErrTooLarge", err)
	}
	big := make([]byte, session.MaxPlaintextSize)
	for name, cfg := range configs {
		q := newPair(t, cfg)
		fresh := keystest.NewDevice("bob")
		a, err := session.Initiate(q.aliceID, fresh.Bundle, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []*session.Session{a, q.alice} {
			msg, err := s.Encrypt(nil, big)
			if err != nil {
				t.Fatalf("%s: largest plaintext: %v", name, err)
			}
			if len(msg) > session.MaxMessageSize {
				t.Fatalf("%s: message of %d bytes exceeds MaxMessageSize %d", name, len(msg), session.MaxMessageSize)
			}
		}
	}
}

func TestMissingKEMCiphertextAndBadHeader(t *testing.T) {
	bob := keystest.NewDevice("bob")
	alice, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := mustEncrypt(t, alice, "x")
	hdrLen := int(m[2])<<8 | int(m[3])
	header := m[4 : 4+hdrLen]
	// Rebuild the message with the KEM ciphertext removed and its length set to zero.
	stripped := bytes.Clone(header[:len(header)-1088])
	stripped[len(stripped)-2], stripped[len(stripped)-1] = 0, 0
	noCT := append([]byte{1, 1, byte(len(stripped) >> 8), byte(len(stripped))}, stripped...)
	noCT = append(noCT, m[4+hdrLen:]...)
	if _, _, err := session.Accept(bob.Identity, bob.Store, noCT, keystest.Identity("alice").Public(), session.Config{}); !errors.Is(err, pqxdh.ErrMissingKEMCiphertext) {
		t.Fatalf("missing KEM ciphertext: got %v", err)
	}
	// Unknown signed prekey id (bytes 4+1+65+65 .. +4 of the message).
	unknown := bytes.Clone(m)
	unknown[4+1+130+3] = 0x7f
	if _, _, err := session.Accept(bob.Identity, bob.Store, unknown, keystest.Identity("alice").Public(), session.Config{}); !errors.Is(err, keys.ErrUnknownPreKey) {
		t.Fatalf("unknown signed prekey: got %v", err)
	}
	// Off-curve ephemeral key.
	offCurve := bytes.Clone(m)
	offCurve[4+1+65+64] ^= 1
	if _, _, err := session.Accept(bob.Identity, bob.Store, offCurve, keystest.Identity("alice").Public(), session.Config{}); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("off-curve ephemeral key: got %v", err)
	}
}

func TestConfigMismatch(t *testing.T) {
	bob := keystest.NewDevice("bob")
	alice, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, session.Config{HeaderEncryption: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := session.Accept(bob.Identity, bob.Store, mustEncrypt(t, alice, "x"), keystest.Identity("alice").Public(), session.Config{}); err == nil {
		t.Fatal("header-encrypted message accepted by a plain-header responder")
	}
}

func TestBadBundleRejected(t *testing.T) {
	bob := keystest.NewDevice("bob")
	mallory := keystest.NewDevice("mallory")
	b := *bob.Bundle
	b.SignedPreKey = mallory.Bundle.SignedPreKey
	if _, err := session.Initiate(keystest.Identity("alice"), &b, session.Config{}); !errors.Is(err, keys.ErrBadSignature) {
		t.Fatalf("forged signed prekey: got %v, want ErrBadSignature", err)
	}
	if _, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, session.Config{MaxSkip: -1}); err == nil {
		t.Fatal("negative MaxSkip accepted")
	}
}

func TestUnmarshalErrors(t *testing.T) {
	p := newPair(t, session.Config{HeaderEncryption: true})
	pending, err := session.Initiate(p.aliceID, keystest.NewDevice("bob").Bundle, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*session.Session{"initiator": p.alice, "responder": p.bob, "pending": pending} {
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		back, err := session.Unmarshal(enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, _ := back.MarshalBinary()
		if !bytes.Equal(enc, again) {
			t.Fatalf("%s: re-encoding differs", name)
		}
		for n := range enc {
			if _, err := session.Unmarshal(enc[:n]); !errors.Is(err, session.ErrMalformed) {
				t.Fatalf("%s: truncation to %d: got %v", name, n, err)
			}
		}
		for _, version := range []byte{1, 9} { // 1: PQXDH v1 and ratchet v1, refused
			v := bytes.Clone(enc)
			v[0] = version
			if _, err := session.Unmarshal(v); !errors.Is(err, session.ErrUnsupportedVersion) {
				t.Fatalf("%s: version %d: %v", name, version, err)
			}
		}
		f := bytes.Clone(enc)
		f[1] |= 0x80
		if _, err := session.Unmarshal(f); !errors.Is(err, session.ErrMalformed) {
			t.Fatalf("%s: unknown flag: %v", name, err)
		}
	}
	// A responder cannot be "awaiting its first reply".
	enc, _ := p.bob.MarshalBinary()
	enc[1] = 0x02
	if _, err := session.Unmarshal(enc); !errors.Is(err, session.ErrMalformed) {
		t.Fatalf("pending responder: %v", err)
	}
}

// TestAcceptChecksIdentityFirst: a genuine prekey message delivered as if from another sender
// (a relay that re-wraps Alice's message under Mallory's envelope) is refused before any prekey
// is touched, so Alice's own delivery still starts the session. Before Accept took the expected
// identity, the caller could only compare identities after the prekeys were consumed, and the
// genuine delivery then failed with keys.ErrPreKeyUsed.
func TestAcceptChecksIdentityFirst(t *testing.T) {
	bob := keystest.NewDevice("bob")
	alice, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	first := mustEncrypt(t, alice, "from Alice")
	before, _ := bob.Store.MarshalBinary()
	for name, expected := range map[string]*keys.IdentityKey{"mallory": keystest.Identity("mallory").Public(), "none": nil} {
		if s, _, err := session.Accept(bob.Identity, bob.Store, first, expected, session.Config{}); !errors.Is(err, session.ErrIdentityMismatch) || s != nil {
			t.Fatalf("expected %s: got %v, want ErrIdentityMismatch", name, err)
		}
	}
	if after, _ := bob.Store.MarshalBinary(); !bytes.Equal(before, after) {
		t.Fatal("refused Accept changed the prekey store")
	}
	if _, pt, err := session.Accept(bob.Identity, bob.Store, first, keystest.Identity("alice").Public(), session.Config{}); err != nil || string(pt) != "from Alice" {
		t.Fatalf("genuine delivery after the refused one: %q, %v", pt, err)
	}
}
