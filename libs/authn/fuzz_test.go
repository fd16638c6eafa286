package authn

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary strings to the token decoder: it must never
// panic, every failure must wrap a package error, and every accepted token
// must re-encode to exactly the input (one encoding per token).
func FuzzDecode(f *testing.F) {
	now := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC).Unix()
	f.Add(buildRaw(1, now, now+60, 1, []byte("alice"), 5, nil))
	f.Add(buildRaw(1, now, now+900, 0xffffffff, bytes.Repeat([]byte("u"), 64), 64, nil))
	f.Add(buildRaw(2, now, now+60, 1, []byte("alice"), 5, nil))
	f.Add(buildRaw(1, now, now+60, 1, []byte("alice"), 9, nil))
	f.Add(buildRaw(1, now, now+60, 1, []byte("alice"), 5, []byte{0}))
	f.Add("")
	f.Add("AQ")
	f.Add(strings.Repeat("A", MaxTokenLen))
	f.Add(strings.Repeat("_", MaxTokenLen+1))

	key := testKey(1)
	v, err := NewVerifier(VerifierConfig{
		Keys:        []ed25519.PublicKey{key.Public().(ed25519.PublicKey)},
		Now:         func() time.Time { return time.Unix(now, 0) },
		Revocations: NoRevocations{},
		CacheSize:   -1,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		var buf [maxRaw]byte
		raw, err := decode(token, &buf)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
				t.Fatalf("decode error %v wraps no package error", err)
			}
			return
		}
		body, err := encode(raw.keyID, raw.claims)
		if err != nil {
			t.Fatalf("decoded claims do not re-encode: %v", err)
		}
		if again := encoding.EncodeToString(append(body, raw.sig...)); again != token {
			t.Fatalf("re-encoding differs:\n got %s\nwant %s", again, token)
		}
		if _, err := v.Verify(context.Background(), token); err != nil &&
			!errors.Is(err, ErrSignature) && !errors.Is(err, ErrUnknownKey) &&
			!errors.Is(err, ErrExpired) && !errors.Is(err, ErrNotYetValid) {
			t.Fatalf("Verify error %v wraps no package error", err)
		}
	})
}
