package pqxdh

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
)

// The handshake and the primitives it is made of are measured in one run so their ratio is
// meaningful on a noisy machine. One full handshake (initiator + responder) costs:
//
//	1 P-256 key generation (EK_A), 8 P-256 ECDH (DH1..DH4 on each side), 1 ML-KEM-768 encapsulation,
//	1 ML-KEM-768 decapsulation, 2 ECDSA P-256 verifications (SPK and PQPK signatures), 2 HKDF.
//
//	go test ./libs/crypto/pqxdh -run '^$' -bench . -benchtime=1s -count=3

func BenchmarkHandshake(b *testing.B) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	b.ReportAllocs()
	for b.Loop() {
		init, err := Initiate(alice, bob.Bundle)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Respond(bob.Identity, bob.Store, init.Header); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshakeFromWire adds decoding the fetched bundle (which expands the ML-KEM key) and
// encoding and decoding the header.
func BenchmarkHandshakeFromWire(b *testing.B) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	bundle, err := bob.Bundle.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		parsed, err := keys.ParseBundle(bundle)
		if err != nil {
			b.Fatal(err)
		}
		init, err := Initiate(alice, parsed)
		if err != nil {
			b.Fatal(err)
		}
		enc, err := init.Header.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		h, err := ParseHeader(enc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Respond(bob.Identity, bob.Store, h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveP256KeyGen(b *testing.B) {
	for b.Loop() {
		if _, err := ecdh.P256().GenerateKey(rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveP256ECDH(b *testing.B) {
	priv := keystest.ECDHKey("a")
	pub := keystest.ECDHKey("b").PublicKey()
	for b.Loop() {
		if _, err := priv.ECDH(pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveMLKEM768Encaps(b *testing.B) {
	ek := keystest.KEMKey("a").EncapsulationKey()
	for b.Loop() {
		ek.Encapsulate()
	}
}

func BenchmarkPrimitiveMLKEM768Decaps(b *testing.B) {
	dk := keystest.KEMKey("a")
	_, ct := dk.EncapsulationKey().Encapsulate()
	for b.Loop() {
		if _, err := dk.Decapsulate(ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveECDSAP256Verify(b *testing.B) {
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), keystest.Scalar("a"))
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("statement"))
	sig, err := ecdsa.SignASN1(rand.Reader, priv, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkPrimitiveHKDF(b *testing.B) {
	ikm := make([]byte, fSize+4*dhSize+mlkem.SharedKeySize)
	salt := make([]byte, sha256.Size)
	for b.Loop() {
		if _, err := hkdf.Key(sha256.New, ikm, salt, Info, SharedKeySize); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshakeVsPrimitives interleaves, in every iteration, one full handshake and the same
// primitive operations done back to back, and reports their ratio ("handshake/primitives") in
// the calling thread's CPU time (Linux; wall-clock elsewhere). Interleaving and CPU time keep the
// ratio meaningful on a loaded machine, where separate benchmarks run under different contention.
func BenchmarkHandshakeVsPrimitives(b *testing.B) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	dhPriv := keystest.ECDHKey("a")
	dhPub := keystest.ECDHKey("b").PublicKey()
	dk := keystest.KEMKey("a")
	ek := dk.EncapsulationKey()
	_, ct := ek.Encapsulate()
	signer, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), keystest.Scalar("a"))
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("statement"))
	sig, err := ecdsa.SignASN1(rand.Reader, signer, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	ikm := make([]byte, fSize+4*dhSize+mlkem.SharedKeySize)
	salt := make([]byte, sha256.Size)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var handshake, primitives time.Duration
	for b.Loop() {
		t0 := cpuClock()
		init, err := Initiate(alice, bob.Bundle)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Respond(bob.Identity, bob.Store, init.Header); err != nil {
			b.Fatal(err)
		}
		t1 := cpuClock()
		if _, err := ecdh.P256().GenerateKey(rand.Reader); err != nil {
			b.Fatal(err)
		}
		for range 8 {
			if _, err := dhPriv.ECDH(dhPub); err != nil {
				b.Fatal(err)
			}
		}
		ek.Encapsulate()
		if _, err := dk.Decapsulate(ct); err != nil {
			b.Fatal(err)
		}
		for range 2 {
			if !ecdsa.VerifyASN1(&signer.PublicKey, digest[:], sig) {
				b.Fatal("verify failed")
			}
			if _, err := hkdf.Key(sha256.New, ikm, salt, Info, SharedKeySize); err != nil {
				b.Fatal(err)
			}
		}
		t2 := cpuClock()
		handshake += t1 - t0
		primitives += t2 - t1
	}
	if primitives > 0 {
		b.ReportMetric(float64(handshake)/float64(primitives), "handshake/primitives")
	}
	b.ReportMetric(float64(handshake.Nanoseconds())/float64(b.N), "handshake-"+cpuClockName+"-ns/op")
	b.ReportMetric(float64(primitives.Nanoseconds())/float64(b.N), "primitives-"+cpuClockName+"-ns/op")
}
