// Package keystest derives repeatable device keys from text labels for known-answer tests,
// examples and benchmarks of the PQXDH stack ([PQXDH]); keys derived here are public knowledge and
// must never protect real messages.
//
// Go 1.26 key generation ignores its rand argument, so repeatable keys come from seed
// constructors: P-256 scalars via ecdh.P256().NewPrivateKey and ML-KEM-768 keys via
// mlkem.NewDecapsulationKey768.
//
// [PQXDH]: https://signal.org/docs/specifications/pqxdh/
package keystest

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
)

// Scalar returns the raw P-256 scalar for label: SHA-256("keystest scalar" || label || counter)
// for the first counter (0, 1, ...) that gives a valid scalar (non-zero, below the group order).
func Scalar(label string) []byte {
	for counter := byte(0); ; counter++ {
		h := sha256.New()
		h.Write([]byte("keystest scalar\x00"))
		h.Write([]byte(label))
		h.Write([]byte{0, counter})
		s := h.Sum(nil)
		if _, err := ecdh.P256().NewPrivateKey(s); err == nil {
			return s
		}
	}
}

// ECDHKey returns the P-256 private key for label.
func ECDHKey(label string) *ecdh.PrivateKey {
	k, err := ecdh.P256().NewPrivateKey(Scalar(label))
	if err != nil {
		panic(fmt.Sprintf("keystest: scalar for %q rejected after validation: %v", label, err))
	}
	return k
}

// KEMKey returns the ML-KEM-768 decapsulation key whose 64-byte seed is
// SHA-512("keystest kem" || label).
func KEMKey(label string) *mlkem.DecapsulationKey768 {
	seed := sha512.Sum512(append([]byte("keystest kem\x00"), label...))
	dk, err := mlkem.NewDecapsulationKey768(seed[:])
	if err != nil {
		panic(fmt.Sprintf("keystest: kem seed for %q: %v", label, err))
	}
	return dk
}

// Identity returns the identity for label.
func Identity(label string) *keys.Identity {
	id, err := keys.NewIdentity(Scalar(label + "/identity"))
	if err != nil {
		panic(fmt.Sprintf("keystest: identity for %q: %v", label, err))
	}
	return id
}

// Device is a complete repeatable device: its identity, a store holding signed prekey 1, one-time
// EC prekey 2, one-time KEM prekey 1 and last-resort KEM prekey 2, and the bundle the server would
// return for it with the one-time keys.
type Device struct {
	Identity *keys.Identity
	Store    *keys.PreKeyStore
	Bundle   *keys.Bundle
	// LastResortBundle is the bundle once the server has run out of one-time keys: no one-time EC
	// prekey and the last-resort KEM prekey.
	LastResortBundle *keys.Bundle
}

// NewDevice builds the device for label. Every key is a function of label; only the ECDSA
// signatures (randomized) and the prekeys' creation time (the time of the call, so that
// initiators accept them) vary between calls, which changes no derived secret.
func NewDevice(label string) *Device {
	id := Identity(label)
	created := time.Now()
	must := func(err error) {
		if err != nil {
			panic(fmt.Sprintf("keystest: device %q: %v", label, err))
		}
	}
	spk, err := keys.NewSignedPreKey(id, 1, created, ECDHKey(label+"/spk/1"))
	must(err)
	opk, err := keys.NewOneTimePreKey(2, ECDHKey(label+"/opk/2"))
	must(err)
	kem, err := keys.NewKEMPreKey(id, 1, created, KEMKey(label+"/kem/1"), false)
	must(err)
	lastResort, err := keys.NewKEMPreKey(id, 2, created, KEMKey(label+"/kem/2"), true)
	must(err)

	store := keys.NewPreKeyStore()
	must(store.AddSignedPreKey(spk))
	must(store.AddOneTimePreKey(opk))
	must(store.AddKEMPreKey(kem))
	must(store.AddKEMPreKey(lastResort))
	return &Device{
		Identity: id,
		Store:    store,
		Bundle: &keys.Bundle{
			IdentityKey:   id.Public(),
			SignedPreKey:  spk.Public(),
			OneTimePreKey: opk.Public(),
			KEMPreKey:     kem.Public(),
		},
		LastResortBundle: &keys.Bundle{
			IdentityKey:  id.Public(),
			SignedPreKey: spk.Public(),
			KEMPreKey:    lastResort.Public(),
		},
	}
}
