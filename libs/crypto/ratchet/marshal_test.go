package ratchet

import (
	"bytes"
	"errors"
	"testing"
)

// midConversation returns a pair that has ratcheted a few times and holds skipped keys.
func midConversation(t testing.TB, cfg Config, seed uint64) (alice, bob *State, pending [][]byte) {
	alice, bob = newTestPair(t, cfg, seed)
	for round := range 3 {
		m0 := mustEncrypt(t, alice, []byte("skipped"), nil)
		mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("a"), nil), nil, []byte("a"))
		mustDecrypt(t, alice, mustEncrypt(t, bob, []byte("b"), nil), nil, []byte("b"))
		if round < 2 {
			pending = append(pending, m0)
		}
	}
	return alice, bob, pending
}

func TestMarshalRoundTrip(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob, pending := midConversation(t, cfg, 30)
		if len(bob.skipped.keys) == 0 || !bob.c.hasPrev {
			t.Fatal("setup did not produce skipped keys and a previous chain")
		}
		for _, s := range []*State{alice, bob} {
			enc := mustMarshal(t, s)
			restored, err := Unmarshal(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustMarshal(t, restored), enc) {
				t.Fatal("marshal(unmarshal(x)) != x")
			}
		}
		alice2, err := Unmarshal(mustMarshal(t, alice))
		if err != nil {
			t.Fatal(err)
		}
		bob2, err := Unmarshal(mustMarshal(t, bob))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pending {
			mustDecrypt(t, bob2, m, nil, []byte("skipped"))
		}
		mustDecrypt(t, bob2, mustEncrypt(t, alice2, []byte("after restart"), nil), nil, []byte("after restart"))
		mustDecrypt(t, alice2, mustEncrypt(t, bob2, []byte("reply"), nil), nil, []byte("reply"))
	})
}

func TestUnmarshalRejectsEveryTruncation(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		_, bob, _ := midConversation(t, cfg, 31)
		enc := mustMarshal(t, bob)
		for n := range len(enc) {
			if _, err := Unmarshal(enc[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated to %d of %d bytes: err = %v, want ErrMalformed", n, len(enc), err)
			}
		}
		if _, err := Unmarshal(append(bytes.Clone(enc), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("trailing byte: err = %v, want ErrMalformed", err)
		}
	})
}

func TestUnmarshalRejectsBadFields(t *testing.T) {
	_, bob, _ := midConversation(t, Config{}, 32)
	enc := mustMarshal(t, bob)
	const (
		flagsAt     = 1
		maxSkipAt   = 2
		maxStoreAt  = 6
		maxStepsAt  = 10
		maxAgeAt    = 14
		scalarAt    = 18
		dhrAt       = scalarAt + 32
		stepsAt     = stateFixedLen - 8
		countAt     = stateFixedLen - 4
		firstSkipAt = stateFixedLen
		skipStepAt  = firstSkipAt + pubKeyLen + 4
	)
	for _, tc := range []struct {
		name string
		edit func(b []byte)
		want error
	}{
		{"version 0", func(b []byte) { b[0] = 0 }, ErrUnsupportedVersion},
		{"version 1 (before expiry and random nonces)", func(b []byte) { b[0] = 1 }, ErrUnsupportedVersion},
		{"version 3", func(b []byte) { b[0] = 3 }, ErrUnsupportedVersion},
		{"zero max skipped steps", func(b []byte) { copy(b[maxStepsAt:], []byte{0, 0, 0, 0}) }, ErrMalformed},
		{"zero max skipped age", func(b []byte) { copy(b[maxAgeAt:], []byte{0, 0, 0, 0}) }, ErrMalformed},
		{"max skipped age above limit", func(b []byte) { copy(b[maxAgeAt:], []byte{0xff, 0xff, 0xff, 0xff}) }, ErrMalformed},
		{"skipped key from a later step", func(b []byte) { copy(b[skipStepAt:], b[stepsAt:stepsAt+4]); b[skipStepAt+3]++ }, ErrMalformed},
		{"unknown flag", func(b []byte) { b[flagsAt] |= 0x80 }, ErrMalformed},
		{"header keys without header encryption", func(b []byte) { b[flagsAt] |= flagHasHKr }, ErrMalformed},
		{"zero max skip", func(b []byte) { copy(b[maxSkipAt:], []byte{0, 0, 0, 0}) }, ErrMalformed},
		{"huge max skip", func(b []byte) { copy(b[maxSkipAt:], []byte{0xff, 0, 0, 0}) }, ErrMalformed},
		{"store below max skip", func(b []byte) { copy(b[maxStoreAt:], []byte{0, 0, 0, 1}) }, ErrMalformed},
		{"zero scalar", func(b []byte) { clear(b[scalarAt : scalarAt+32]) }, ErrMalformed},
		{"scalar above order", func(b []byte) { copy(b[scalarAt:scalarAt+32], bytes.Repeat([]byte{0xff}, 32)) }, ErrMalformed},
		{"remote key off curve", func(b []byte) { b[dhrAt+64] ^= 1 }, ErrMalformed},
		{"remote key compressed tag", func(b []byte) { b[dhrAt] = 2 }, ErrMalformed},
		{"count above store bound", func(b []byte) { copy(b[countAt:], []byte{0, 0, 0x7f, 0xff}) }, ErrMalformed},
		{"count above entries", func(b []byte) { b[countAt+3]++ }, ErrMalformed},
	} {
		b := bytes.Clone(enc)
		tc.edit(b)
		if _, err := Unmarshal(b); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if firstSkipAt >= len(enc) {
		t.Fatal("encoding holds no skipped keys")
	}
	if _, err := Unmarshal(make([]byte, maxStateLen+1)); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("oversized state: err = %v", err)
	}
	big := make([]byte, maxStateLen+1)
	big[0] = stateVersion
	if _, err := Unmarshal(big); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized state: err = %v, want ErrMalformed", err)
	}
}
