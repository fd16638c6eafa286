package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"testing"
)

// The envelope benchmarks run beside the primitives they are built from, so one run shows the
// overhead: Seal is one key generation, two ECDH and two AES-GCM; Open is two ECDH, two AES-GCM
// and one Ed25519 verification (plus point decoding).

func BenchmarkSeal1KiB(b *testing.B) {
	f := newFixture(b)
	content := make([]byte, 1024)
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if _, err := Seal(f.sender(), f.recipient(), ContentSessionMessage, content); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen1KiB(b *testing.B) {
	f := newFixture(b)
	env := f.seal(b, ContentSessionMessage, make([]byte, 1024))
	b.SetBytes(1024)
	for b.Loop() {
		if _, err := f.open(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealOpen1KiB(b *testing.B) {
	f := newFixture(b)
	content := make([]byte, 1024)
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		env, err := Seal(f.sender(), f.recipient(), ContentSessionMessage, content)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.open(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveP256ECDH(b *testing.B) {
	alice, bob := p256FromSeed(b, "alice"), p256FromSeed(b, "bob").PublicKey()
	for b.Loop() {
		if _, err := alice.ECDH(bob); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveP256GenerateKey(b *testing.B) {
	for b.Loop() {
		if _, err := ecdh.P256().GenerateKey(nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveAES256GCMSeal1KiB(b *testing.B) {
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	nonce, plaintext := make([]byte, aead.NonceSize()), make([]byte, 1024)
	out := make([]byte, 0, len(plaintext)+aead.Overhead())
	b.SetBytes(int64(len(plaintext)))
	for b.Loop() {
		out = aead.Seal(out[:0], nonce, plaintext, nil)
	}
}

func BenchmarkPrimitiveEd25519Verify(b *testing.B) {
	key := ed25519FromSeed("issuer")
	msg := make([]byte, 200)
	sig := ed25519.Sign(key, msg)
	pub := key.Public().(ed25519.PublicKey)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}
