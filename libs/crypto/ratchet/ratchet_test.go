package ratchet

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"
	"testing"
)

func TestConversation(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 10)
		ad := []byte("alice->bob identity AD")
		for round := range 5 {
			for i := range round + 1 {
				pt := fmt.Appendf(nil, "a%d.%d", round, i)
				mustDecrypt(t, bob, mustEncrypt(t, alice, pt, ad), ad, pt)
			}
			for i := range 2 {
				pt := fmt.Appendf(nil, "b%d.%d", round, i)
				mustDecrypt(t, alice, mustEncrypt(t, bob, pt, ad), ad, pt)
			}
		}
	})
}

func TestEmptyPlaintextAndAD(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 11)
		msg := mustEncrypt(t, alice, nil, nil)
		if want := alice.Overhead(); len(msg) != want {
			t.Fatalf("empty message is %d bytes, want Overhead() = %d", len(msg), want)
		}
		mustDecrypt(t, bob, msg, nil, nil)
	})
}

func TestEncryptAppendsToDst(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 12)
		msg, err := alice.Encrypt([]byte("prefix"), []byte("hello"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(msg, []byte("prefix")) {
			t.Fatalf("Encrypt did not keep dst: %q", msg[:6])
		}
		got, err := bob.Decrypt([]byte("out:"), msg[len("prefix"):], nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "out:hello" {
			t.Fatalf("Decrypt = %q, want %q", got, "out:hello")
		}
	})
}

func TestResponderCannotSendFirst(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		_, bob := newTestPair(t, cfg, 13)
		if _, err := bob.Encrypt(nil, []byte("x"), nil); !errors.Is(err, ErrNoSendingChain) {
			t.Fatalf("responder Encrypt before receiving: err = %v, want ErrNoSendingChain", err)
		}
	})
}

func TestOutOfOrderAcrossRatchetSteps(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 14)
		type sent struct{ msg, pt []byte }
		var fromAlice []sent
		for i := range 4 {
			pt := fmt.Appendf(nil, "first chain %d", i)
			fromAlice = append(fromAlice, sent{mustEncrypt(t, alice, pt, nil), pt})
		}
		// Bob sees only message 3, replies; Alice answers with a new chain.
		mustDecrypt(t, bob, fromAlice[3].msg, nil, fromAlice[3].pt)
		mustDecrypt(t, alice, mustEncrypt(t, bob, []byte("reply"), nil), nil, []byte("reply"))
		for i := range 3 {
			pt := fmt.Appendf(nil, "second chain %d", i)
			fromAlice = append(fromAlice, sent{mustEncrypt(t, alice, pt, nil), pt})
		}
		// Deliver the rest backwards: new chain first, then the skipped keys of the old one.
		for i := len(fromAlice) - 1; i >= 0; i-- {
			if i == 3 {
				continue
			}
			mustDecrypt(t, bob, fromAlice[i].msg, nil, fromAlice[i].pt)
		}
		if n := len(bob.skipped.keys); n != 0 {
			t.Fatalf("%d skipped keys left after every message arrived", n)
		}
	})
}

func TestReplayRejected(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 15)
		m0 := mustEncrypt(t, alice, []byte("m0"), nil)
		m1 := mustEncrypt(t, alice, []byte("m1"), nil)
		mustDecrypt(t, bob, m0, nil, []byte("m0"))
		mustReject(t, bob, m0, nil, ErrDuplicate) // in-chain replay
		mustDecrypt(t, bob, m1, nil, []byte("m1"))
		mustReject(t, bob, m1, nil, ErrDuplicate)

		// After a full round trip the old chain is the "previous" one: still named a duplicate.
		mustDecrypt(t, alice, mustEncrypt(t, bob, []byte("r"), nil), nil, []byte("r"))
		m2 := mustEncrypt(t, alice, []byte("m2"), nil)
		mustDecrypt(t, bob, m2, nil, []byte("m2"))
		mustReject(t, bob, m1, nil, ErrDuplicate)
		mustReject(t, bob, m2, nil, ErrDuplicate)

		// A skipped key serves exactly once.
		m3 := mustEncrypt(t, alice, []byte("m3"), nil)
		m4 := mustEncrypt(t, alice, []byte("m4"), nil)
		mustDecrypt(t, bob, m4, nil, []byte("m4"))
		mustDecrypt(t, bob, m3, nil, []byte("m3"))
		mustReject(t, bob, m3, nil, ErrDuplicate)
	})
}

// TestEveryByteFlipped flips each byte of a first message, an in-chain message and a message
// that triggers a DH ratchet step: each variant is rejected without touching the state, and the
// genuine message still decrypts afterwards.
func TestEveryByteFlipped(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 16)
		ad := []byte("ad")
		check := func(receiver *State, msg, pt []byte) {
			t.Helper()
			for i := range msg {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					bad := bytes.Clone(msg)
					bad[i] ^= mask
					mustReject(t, receiver, bad, ad, nil)
				}
			}
			mustReject(t, receiver, msg[:len(msg)-1], ad, nil)
			mustReject(t, receiver, append(bytes.Clone(msg), 0), ad, nil)
			mustReject(t, receiver, msg, []byte("other ad"), ErrDecrypt)
			mustDecrypt(t, receiver, msg, ad, pt)
		}
		check(bob, mustEncrypt(t, alice, []byte("first"), ad), []byte("first"))
		check(bob, mustEncrypt(t, alice, []byte("second"), ad), []byte("second"))
		check(alice, mustEncrypt(t, bob, []byte("ratchet"), ad), []byte("ratchet"))
	})
}

func TestWrongSessionRejected(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 17)
		_, otherBob := newTestPair(t, cfg, 18)
		msg := mustEncrypt(t, alice, []byte("for bob"), nil)
		mustReject(t, otherBob, msg, nil, ErrDecrypt)
		// A sender cannot decrypt its own message: it is not the receiver of that chain.
		mustReject(t, alice, msg, nil, nil)
		mustDecrypt(t, bob, msg, nil, []byte("for bob"))
	})
}

func TestOtherHeaderModeRejected(t *testing.T) {
	alice, _ := newTestPair(t, Config{}, 19)
	_, heBob := newTestPair(t, Config{HeaderEncryption: true}, 19)
	mustReject(t, heBob, mustEncrypt(t, alice, []byte("x"), nil), nil, ErrMalformed)
}

func TestUnknownMessageVersion(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 20)
		msg := mustEncrypt(t, alice, []byte("x"), nil)
		for _, v := range []byte{0x00, legacyVersionPlainHeader, legacyVersionEncryptedHeader, 0x05, 0x7f, 0xff} {
			bad := bytes.Clone(msg)
			bad[0] = v
			mustReject(t, bob, bad, nil, ErrUnsupportedVersion)
		}
		mustReject(t, bob, nil, nil, ErrMalformed)
		for n := 1; n < bob.Overhead(); n++ {
			mustReject(t, bob, msg[:n], nil, ErrMalformed)
		}
	})
}

func TestMaxSkip(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		cfg.MaxSkip = 10
		alice, bob := newTestPair(t, cfg, 21)
		var msgs [][]byte
		for i := range 23 {
			msgs = append(msgs, mustEncrypt(t, alice, fmt.Appendf(nil, "%d", i), nil))
		}
		mustReject(t, bob, msgs[11], nil, ErrTooManySkipped) // skips 0..10: 11 keys
		mustDecrypt(t, bob, msgs[10], nil, []byte("10"))     // skips exactly 10
		mustReject(t, bob, msgs[22], nil, ErrTooManySkipped) // skips 11..21: 11 keys
		mustDecrypt(t, bob, msgs[21], nil, []byte("21"))
		if n := len(bob.skipped.keys); n != 20 {
			t.Fatalf("%d skipped keys stored, want 20", n)
		}
	})
}

// TestMaxSkipAcrossRatchet: a new chain announcing PN beyond MaxSkip in the old chain is refused.
func TestMaxSkipAcrossRatchet(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		cfg.MaxSkip = 5
		alice, bob := newTestPair(t, cfg, 22)
		mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("hi"), nil), nil, []byte("hi"))
		mustDecrypt(t, alice, mustEncrypt(t, bob, []byte("r1"), nil), nil, []byte("r1"))
		for range 7 { // Bob will miss six of these: Nr 0 → PN 7
			mustEncrypt(t, bob, []byte("lost"), nil)
		}
		mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("a"), nil), nil, []byte("a"))
		msg := mustEncrypt(t, bob, []byte("new chain"), nil)
		mustReject(t, alice, msg, nil, ErrTooManySkipped)
	})
}

func TestSkippedKeyEviction(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		cfg.MaxSkip, cfg.MaxSkippedKeys = 4, 6
		alice, bob := newTestPair(t, cfg, 23)
		var msgs [][]byte
		for i := range 12 {
			msgs = append(msgs, mustEncrypt(t, alice, fmt.Appendf(nil, "%d", i), nil))
		}
		mustDecrypt(t, bob, msgs[4], nil, []byte("4"))   // stores 0-3
		mustDecrypt(t, bob, msgs[9], nil, []byte("9"))   // stores 5-8, evicts 0 and 1
		mustReject(t, bob, msgs[0], nil, ErrDuplicate)   // evicted
		mustReject(t, bob, msgs[1], nil, ErrDuplicate)   // evicted
		mustDecrypt(t, bob, msgs[2], nil, []byte("2"))   // oldest survivor
		mustDecrypt(t, bob, msgs[11], nil, []byte("11")) // stores 10, store now 3,5,6,7,8,10
		if n := len(bob.skipped.keys); n != 6 {
			t.Fatalf("store holds %d keys, want 6", n)
		}
		for _, i := range []int{3, 5, 6, 7, 8, 10} {
			mustDecrypt(t, bob, msgs[i], nil, fmt.Appendf(nil, "%d", i))
		}
	})
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{MaxSkip: -1},
		{MaxSkippedKeys: -1},
		{MaxSkip: MaxConfigLimit + 1},
		{MaxSkippedKeys: MaxConfigLimit + 1},
		{MaxSkip: 10, MaxSkippedKeys: 9},
	} {
		if _, err := cfg.resolve(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	got, err := Config{}.resolve()
	if err != nil || got.MaxSkip != DefaultMaxSkip || got.MaxSkippedKeys != DefaultMaxSkippedKeys {
		t.Errorf("zero Config resolves to %+v, %v", got, err)
	}
	got, err = Config{MaxSkip: 5000}.resolve()
	if err != nil || got.MaxSkippedKeys != 5000 {
		t.Errorf("MaxSkip above the default store bound resolves to %+v, %v", got, err)
	}
}

func TestConstructorsRejectBadKeys(t *testing.T) {
	r := testStream(24)
	key := testKey(t, r)
	x, err := ecdh.X25519().NewPrivateKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	sk := make([]byte, 32)
	for name, err := range map[string]error{
		"short secret initiator": func() error { _, err := NewInitiator(sk[:31], key.PublicKey(), Config{}); return err }(),
		"long secret responder":  func() error { _, err := NewResponder(append(sk, 0), key, Config{}); return err }(),
		"nil remote":             func() error { _, err := NewInitiator(sk, nil, Config{}); return err }(),
		"nil own":                func() error { _, err := NewResponder(sk, nil, Config{}); return err }(),
		"x25519 remote":          func() error { _, err := NewInitiator(sk, x.PublicKey(), Config{}); return err }(),
		"x25519 own":             func() error { _, err := NewResponder(sk, x, Config{}); return err }(),
	} {
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: err = %v, want ErrInvalidKey", name, err)
		}
	}
	if _, err := NewInitiator(sk, key.PublicKey(), Config{MaxSkip: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad config: err = %v, want ErrInvalidConfig", err)
	}
}

// TestProductionConstructors runs the exported constructors, which draw keys from crypto/rand.
func TestProductionConstructors(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		bobKey, err := ecdh.P256().GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		sk := bytes.Repeat([]byte{7}, 32)
		alice, err := NewInitiator(sk, bobKey.PublicKey(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		bob, err := NewResponder(sk, bobKey, cfg)
		if err != nil {
			t.Fatal(err)
		}
		mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("a"), nil), nil, []byte("a"))
		mustDecrypt(t, alice, mustEncrypt(t, bob, []byte("b"), nil), nil, []byte("b"))
		mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("c"), nil), nil, []byte("c"))
	})
}

func TestCounterExhausted(t *testing.T) {
	alice, _ := newTestPair(t, Config{}, 25)
	alice.c.ns = 1<<32 - 1
	before := mustMarshal(t, alice)
	if _, err := alice.Encrypt(nil, []byte("x"), nil); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("err = %v, want ErrCounterExhausted", err)
	}
	if !bytes.Equal(before, mustMarshal(t, alice)) {
		t.Fatal("failed Encrypt changed the state")
	}
}

// TestReceiveCounterExhausted: a header numbering a message 2^32-1 (which Encrypt never does) is
// refused before anything else rather than allowed to wrap the receiving counter.
func TestReceiveCounterExhausted(t *testing.T) {
	alice, bob := newTestPair(t, Config{}, 26)
	mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("a"), nil), nil, []byte("a"))
	msg := mustEncrypt(t, alice, []byte("b"), nil)
	copy(msg[1+messageNonceLen+pubKeyLen+4:], []byte{0xff, 0xff, 0xff, 0xff}) // N
	bob.c.nr = 1<<32 - 3
	mustReject(t, bob, msg, nil, ErrCounterExhausted)
}

// TestEncryptADAliasesDst: the session layer authenticates its own prefix, already written to
// dst, as ad.
func TestEncryptADAliasesDst(t *testing.T) {
	alice, bob := newTestPair(t, Config{}, 27)
	buf := make([]byte, 0, 256)
	buf = append(buf, "session prefix"...)
	msg, err := alice.Encrypt(buf, []byte("body"), buf)
	if err != nil {
		t.Fatal(err)
	}
	mustDecrypt(t, bob, msg[len("session prefix"):], []byte("session prefix"), []byte("body"))
}

// TestSteadyStateAllocations pins the allocation budget of an in-order 1 KiB message: only the
// two objects of keying AES-256-GCM per message key, on each side (docs/crypto/ratchet.md).
func TestSteadyStateAllocations(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 28)
		pt, ad := make([]byte, 1024), make([]byte, 64)
		msg := make([]byte, 0, len(pt)+alice.Overhead())
		out := make([]byte, 0, len(pt))
		var err error
		allocs := testing.AllocsPerRun(200, func() {
			if msg, err = alice.Encrypt(msg[:0], pt, ad); err != nil {
				t.Fatal(err)
			}
			if out, err = bob.Decrypt(out[:0], msg, ad); err != nil {
				t.Fatal(err)
			}
		})
		budget := 4.0
		if raceEnabled {
			budget = 16 // see race_on_test.go
		}
		if allocs > budget {
			t.Fatalf("%v allocations per message, want at most %v (two AES-GCM keyings)", allocs, budget)
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy source failed") }

// TestEntropyFailure: when key generation or a header nonce cannot get random bytes, the call
// fails and the state stays as it was.
func TestEntropyFailure(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 29)
		msg := mustEncrypt(t, alice, []byte("hi"), nil)
		bob.rand = failingReader{}
		mustReject(t, bob, msg, nil, nil) // the DH ratchet step cannot generate its key
		bob.rand = testStream(30)
		mustDecrypt(t, bob, msg, nil, []byte("hi"))

		if cfg.HeaderEncryption {
			alice.rand = failingReader{}
			before := mustMarshal(t, alice)
			if _, err := alice.Encrypt(nil, []byte("x"), nil); err == nil {
				t.Fatal("Encrypt succeeded without a header nonce")
			}
			if !bytes.Equal(before, mustMarshal(t, alice)) {
				t.Fatal("failed Encrypt changed the state")
			}
		}
	})
	key := testKey(t, testStream(31))
	if _, err := newInitiator(make([]byte, 32), key.PublicKey(), Config{}, failingReader{}); err == nil {
		t.Fatal("newInitiator succeeded without entropy")
	}
}
