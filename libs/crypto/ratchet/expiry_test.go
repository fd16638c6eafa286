package ratchet

import (
	"errors"
	"testing"
	"time"
)

// roundTrip makes bob take one receiving DH step: he replies, alice answers from a new chain.
func roundTrip(t *testing.T, alice, bob *State) {
	t.Helper()
	mustDecrypt(t, alice, mustEncrypt(t, bob, []byte("b"), nil), nil, []byte("b"))
	mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("a"), nil), nil, []byte("a"))
}

// TestSkippedKeysExpireBySteps: a skipped key outlives DefaultMaxSkippedSteps receiving DH steps
// and no more; then it is deleted from the state, and its message, from a chain older than the
// previous one, can no longer be told from a forgery.
func TestSkippedKeysExpireBySteps(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 61)
		early := mustEncrypt(t, alice, []byte("early"), nil)
		late := mustEncrypt(t, alice, []byte("late"), nil)
		mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("first"), nil), nil, []byte("first"))
		for range DefaultMaxSkippedSteps {
			roundTrip(t, alice, bob)
		}
		mustDecrypt(t, bob, early, nil, []byte("early")) // DefaultMaxSkippedSteps steps: still kept
		roundTrip(t, alice, bob)
		if n := len(bob.skipped.keys); n != 0 {
			t.Fatalf("%d skipped keys left after %d steps", n, DefaultMaxSkippedSteps+1)
		}
		mustReject(t, bob, late, nil, nil)
	})
}

// TestSkippedKeysExpireByAge: a skipped key is refused once MaxSkippedAge has passed, and deleted
// by the next successful Decrypt or Encrypt; younger keys stay.
func TestSkippedKeysExpireByAge(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		cfg.MaxSkippedAge = time.Hour
		alice, bob := newTestPair(t, cfg, 62)
		now := time.Unix(1_800_000_000, 0)
		bob.clock = func() time.Time { return now }
		old := mustEncrypt(t, alice, []byte("old"), nil)
		mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("1"), nil), nil, []byte("1"))
		now = now.Add(30 * time.Minute)
		young := mustEncrypt(t, alice, []byte("young"), nil)
		mustDecrypt(t, bob, mustEncrypt(t, alice, []byte("2"), nil), nil, []byte("2"))
		if n := len(bob.skipped.keys); n != 2 {
			t.Fatalf("%d skipped keys, want 2", n)
		}
		now = now.Add(30 * time.Minute) // old is an hour old, young half an hour
		mustReject(t, bob, old, nil, ErrDuplicate)
		mustEncrypt(t, bob, []byte("reply"), nil)
		if n := len(bob.skipped.keys); n != 1 {
			t.Fatalf("%d skipped keys after expiry, want 1", n)
		}
		mustDecrypt(t, bob, young, nil, []byte("young"))
	})
}

// TestSkippedExpiryConfig: limits outside their range are refused; the state keeps them.
func TestSkippedExpiryConfig(t *testing.T) {
	for _, cfg := range []Config{
		{MaxSkippedSteps: -1}, {MaxSkippedSteps: MaxConfigLimit + 1},
		{MaxSkippedAge: -time.Second}, {MaxSkippedAge: MaxSkippedAgeLimit + time.Second}, {MaxSkippedAge: time.Millisecond},
	} {
		if _, err := NewResponder(make([]byte, 32), testKey(t, testStream(1)), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	_, bob := newTestPair(t, Config{MaxSkippedSteps: 3, MaxSkippedAge: 2 * time.Hour}, 63)
	back, err := Unmarshal(mustMarshal(t, bob))
	if err != nil {
		t.Fatal(err)
	}
	if back.cfg.MaxSkippedSteps != 3 || back.cfg.MaxSkippedAge != 2*time.Hour {
		t.Fatalf("restored limits %d, %v", back.cfg.MaxSkippedSteps, back.cfg.MaxSkippedAge)
	}
}
