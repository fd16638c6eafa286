// Package cryptobench times the client's session crypto in one way for every platform, so
// that the web app's figures (docs/web.md) compare the browser (GOOS=js GOARCH=wasm) with
// native Go like for like: a full PQXDH session handshake (Initiate, the first message,
// Accept) and one 1 KiB Double Ratchet message (encrypt and decrypt), both with header
// encryption as the messaging layer uses them.
package cryptobench

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/session"
)

// Result is the median time of each operation over the rounds run.
type Result struct {
	Rounds    int
	Handshake time.Duration // PQXDH: Initiate + first message + Accept
	Message   time.Duration // one 1 KiB message, encrypted then decrypted
}

// reusable lets one bundle serve every round by never consuming its one-time keys.
type reusable struct{ session.PreKeyStore }

func (reusable) ConsumeOneTimePreKey(uint32) error { return nil }
func (reusable) ConsumeKEMPreKey(uint32) error     { return nil }

// device is a responder with fresh random keys: a signed prekey, a one-time EC prekey and a
// one-time KEM prekey.
func device() (*keys.Identity, *keys.PreKeyStore, *keys.Bundle, error) {
	id, err := keys.GenerateIdentity()
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	ec := func() *ecdh.PrivateKey {
		k, err2 := ecdh.P256().GenerateKey(rand.Reader)
		if err2 != nil {
			err = err2
		}
		return k
	}
	spkKey, opkKey := ec(), ec()
	kemKey, kerr := mlkem.GenerateKey768()
	if err != nil || kerr != nil {
		return nil, nil, nil, fmt.Errorf("cryptobench: keys: %w", errors.Join(err, kerr))
	}
	spk, err := keys.NewSignedPreKey(id, 1, now, spkKey)
	if err != nil {
		return nil, nil, nil, err
	}
	opk, err := keys.NewOneTimePreKey(2, opkKey)
	if err != nil {
		return nil, nil, nil, err
	}
	kem, err := keys.NewKEMPreKey(id, 1, now, kemKey, false)
	if err != nil {
		return nil, nil, nil, err
	}
	store := keys.NewPreKeyStore()
	for _, err := range []error{store.AddSignedPreKey(spk), store.AddOneTimePreKey(opk), store.AddKEMPreKey(kem)} {
		if err != nil {
			return nil, nil, nil, err
		}
	}
	return id, store, &keys.Bundle{IdentityKey: id.Public(), SignedPreKey: spk.Public(), OneTimePreKey: opk.Public(), KEMPreKey: kem.Public()}, nil
}

// Run times rounds handshakes and rounds 1 KiB messages and returns the medians.
func Run(rounds int) (Result, error) {
	if rounds < 1 {
		return Result{}, fmt.Errorf("cryptobench: %d rounds", rounds)
	}
	alice, err := keys.GenerateIdentity()
	if err != nil {
		return Result{}, err
	}
	bobID, bobStore, bundle, err := device()
	if err != nil {
		return Result{}, err
	}
	cfg := session.Config{HeaderEncryption: true}
	store := reusable{bobStore}
	hello := make([]byte, 64)
	var a, b *session.Session
	hs := make([]time.Duration, rounds)
	for i := range hs {
		start := time.Now()
		if a, err = session.Initiate(alice, bundle, cfg); err != nil {
			return Result{}, fmt.Errorf("cryptobench: initiate: %w", err)
		}
		msg, err := a.Encrypt(nil, hello)
		if err != nil {
			return Result{}, err
		}
		if b, _, err = session.Accept(bobID, store, msg, alice.Public(), cfg); err != nil {
			return Result{}, fmt.Errorf("cryptobench: accept: %w", err)
		}
		hs[i] = time.Since(start)
	}
	plaintext := make([]byte, 1024)
	ms := make([]time.Duration, rounds)
	for i := range ms {
		start := time.Now()
		msg, err := a.Encrypt(nil, plaintext)
		if err != nil {
			return Result{}, err
		}
		if _, err := b.Decrypt(nil, msg); err != nil {
			return Result{}, fmt.Errorf("cryptobench: decrypt: %w", err)
		}
		ms[i] = time.Since(start)
	}
	return Result{Rounds: rounds, Handshake: median(hs), Message: median(ms)}, nil
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}
