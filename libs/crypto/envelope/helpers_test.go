package envelope

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"
)

// testNow is the fixed clock of every test.
var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// p256FromSeed derives a repeatable P-256 key: SHA-256(seed || counter), retried on the
// (astronomically rare) scalar that is zero or not below the group order.
func p256FromSeed(t testing.TB, seed string) *ecdh.PrivateKey {
	t.Helper()
	for counter := uint32(0); counter < 16; counter++ {
		h := sha256.Sum256(binary.BigEndian.AppendUint32([]byte(seed), counter))
		if k, err := ecdh.P256().NewPrivateKey(h[:]); err == nil {
			return k
		}
	}
	t.Fatalf("no valid P-256 scalar for seed %q", seed)
	return nil
}

func ed25519FromSeed(seed string) ed25519.PrivateKey {
	h := sha256.Sum256([]byte(seed))
	return ed25519.NewKeyFromSeed(h[:])
}

// fixture is Alice's device 7 sending to Bob's device 3 under one issuer.
type fixture struct {
	issuer    *Issuer
	root      ed25519.PublicKey
	alice     *ecdh.PrivateKey
	aliceCert []byte
	bob       *ecdh.PrivateKey
	bobDevice uint32
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	issuer, err := NewIssuer(ed25519FromSeed("issuer"), 24*time.Hour, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	alice := p256FromSeed(t, "alice")
	cert, err := issuer.Issue("alice@example.org", 7, alice.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return fixture{
		issuer:    issuer,
		root:      issuer.TrustRoot(),
		alice:     alice,
		aliceCert: cert,
		bob:       p256FromSeed(t, "bob"),
		bobDevice: 3,
	}
}

func (f fixture) sender() Sender { return Sender{Certificate: f.aliceCert, IdentityKey: f.alice} }

func (f fixture) recipient() Recipient {
	return Recipient{IdentityKey: f.bob.PublicKey(), DeviceID: f.bobDevice}
}

func (f fixture) seal(t testing.TB, ct ContentType, content []byte) []byte {
	t.Helper()
	env, err := Seal(f.sender(), f.recipient(), ct, content)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return env
}

func (f fixture) open(env []byte) (*Opened, error) {
	return Open(f.bob, f.bobDevice, f.root, testNow, env)
}
