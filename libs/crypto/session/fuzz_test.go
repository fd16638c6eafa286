package session_test

import (
	"bytes"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
	"github.com/guardyn/guardyn/libs/crypto/session"
)

// FuzzAccept feeds arbitrary bytes to Accept: it must fail cleanly or start a session, and never
// consume a prekey unless it succeeded. Each input costs a handshake, so minimizing an interesting
// input takes long; fuzz it with a short minimization budget:
//
//	go test ./libs/crypto/session -run '^$' -fuzz '^FuzzAccept$' -fuzztime=20s -fuzzminimizetime=2s
func FuzzAccept(f *testing.F) {
	for _, cfg := range configs {
		bob := keystest.NewDevice("bob")
		alice, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, cfg)
		if err != nil {
			f.Fatal(err)
		}
		m := mustEncrypt(f, alice, "seed")
		f.Add(m)
		f.Add(m[:200])
		lr, err := session.Initiate(keystest.Identity("alice"), bob.LastResortBundle, cfg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(mustEncrypt(f, lr, ""))
	}
	f.Add([]byte{1, 1, 0, 0})
	f.Add([]byte{1, 2})
	bob := keystest.NewDevice("bob")
	f.Fuzz(func(t *testing.T, data []byte) {
		before, _ := bob.Store.MarshalBinary()
		for _, cfg := range configs {
			s, _, err := session.Accept(bob.Identity, bob.Store, data, keystest.Identity("alice").Public(), cfg)
			if err != nil {
				after, _ := bob.Store.MarshalBinary()
				if !bytes.Equal(before, after) {
					t.Fatal("failed Accept changed the prekey store")
				}
				continue
			}
			if s.RemoteIdentity() == nil {
				t.Fatal("session without remote identity")
			}
			// A fresh store for the next input: this one may have consumed keys.
			bob = keystest.NewDevice("bob")
			return
		}
	})
}

// FuzzDecrypt feeds arbitrary bytes to an established session's Decrypt: it must fail cleanly
// and leave the session working, or decrypt.
func FuzzDecrypt(f *testing.F) {
	p := newPair(f, session.Config{HeaderEncryption: true})
	q := newPair(f, session.Config{})
	f.Add(mustEncrypt(f, p.alice, "seed"))
	f.Add(mustEncrypt(f, q.alice, "seed"))
	f.Add(mustEncrypt(f, p.bob, "new chain"))
	f.Add([]byte{1, 2, 2})
	f.Add([]byte{1, 1, 0, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, s := range []*session.Session{p.bob, q.bob} {
			_, _ = s.Decrypt(nil, data)
		}
		// Whatever happened, the sessions still carry genuine messages both ways.
		for _, pp := range []*pair{p, q} {
			mustDecrypt(t, pp.bob, mustEncrypt(t, pp.alice, "still works"), "still works")
		}
	})
}

// FuzzUnmarshal feeds arbitrary bytes to Unmarshal: it must fail cleanly or give a session that
// re-encodes to the same bytes.
func FuzzUnmarshal(f *testing.F) {
	p := newPair(f, session.Config{HeaderEncryption: true})
	pending, err := session.Initiate(p.aliceID, keystest.NewDevice("bob").Bundle, session.Config{})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []*session.Session{p.alice, p.bob, pending} {
		enc, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	f.Add([]byte{1, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := session.Unmarshal(data)
		if err != nil {
			return
		}
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatal("accepted state does not re-encode to its input")
		}
	})
}
