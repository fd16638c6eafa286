package ratchet

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

const benchSize = 1024

func benchModes(b *testing.B, f func(b *testing.B, cfg Config)) {
	for _, he := range []bool{false, true} {
		name := "plain-header"
		if he {
			name = "encrypted-header"
		}
		b.Run(name, func(b *testing.B) { f(b, Config{HeaderEncryption: he}) })
	}
}

// BenchmarkMessage1KiB is the steady state: one 1 KiB message encrypted and decrypted in order
// within a chain, into buffers with capacity (the caller's side of the zero-allocation target).
func BenchmarkMessage1KiB(b *testing.B) {
	benchModes(b, func(b *testing.B, cfg Config) {
		alice, bob := newTestPair(b, cfg, 1)
		pt := make([]byte, benchSize)
		ad := make([]byte, 64)
		msg := make([]byte, 0, benchSize+alice.Overhead())
		out := make([]byte, 0, benchSize)
		b.SetBytes(benchSize)
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			var err error
			if msg, err = alice.Encrypt(msg[:0], pt, ad); err != nil {
				b.Fatal(err)
			}
			if out, err = bob.Decrypt(out[:0], msg, ad); err != nil {
				b.Fatal(err)
			}
		}
		reportCPUTime(b, cpu)
	})
}

// BenchmarkEncrypt1KiB is the sending half of BenchmarkMessage1KiB.
func BenchmarkEncrypt1KiB(b *testing.B) {
	benchModes(b, func(b *testing.B, cfg Config) {
		alice, _ := newTestPair(b, cfg, 1)
		pt := make([]byte, benchSize)
		msg := make([]byte, 0, benchSize+alice.Overhead())
		b.SetBytes(benchSize)
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			var err error
			if msg, err = alice.Encrypt(msg[:0], pt, nil); err != nil {
				b.Fatal(err)
			}
		}
		reportCPUTime(b, cpu)
	})
}

// BenchmarkDHRatchetTurn sends one 1 KiB message per op, alternating direction, so every
// Decrypt performs a DH ratchet step (two ECDH, one key generation, two KDF_RK).
func BenchmarkDHRatchetTurn(b *testing.B) {
	benchModes(b, func(b *testing.B, cfg Config) {
		alice, bob := newTestPair(b, cfg, 2)
		parties := [2]*State{alice, bob}
		pt := make([]byte, benchSize)
		msg := make([]byte, 0, benchSize+alice.Overhead())
		out := make([]byte, 0, benchSize)
		b.ReportAllocs()
		i := 0
		cpu := processCPU()
		for b.Loop() {
			from, to := parties[i%2], parties[1-i%2]
			i++
			var err error
			if msg, err = from.Encrypt(msg[:0], pt, nil); err != nil {
				b.Fatal(err)
			}
			if out, err = to.Decrypt(out[:0], msg, nil); err != nil {
				b.Fatal(err)
			}
		}
		reportCPUTime(b, cpu)
	})
}

// BenchmarkOutOfOrderDecrypt decrypts batches of 100 messages in reverse order: the first of a
// batch skips 99 keys, the rest come from the skipped-key store. Reported per message.
func BenchmarkOutOfOrderDecrypt(b *testing.B) {
	benchModes(b, func(b *testing.B, cfg Config) {
		alice, bob := newTestPair(b, cfg, 3)
		pt := make([]byte, benchSize)
		const batch = 100
		msgs := make([][]byte, batch)
		out := make([]byte, 0, benchSize)
		b.ReportAllocs()
		i := batch
		cpu := processCPU()
		for b.Loop() {
			if i == batch {
				b.StopTimer()
				setup := processCPU()
				for j := range msgs {
					var err error
					if msgs[j], err = alice.Encrypt(msgs[j][:0], pt, nil); err != nil {
						b.Fatal(err)
					}
				}
				i = 0
				cpu += processCPU() - setup // keep the untimed encryptions out of cpu-ns/op
				b.StartTimer()
			}
			var err error
			if out, err = bob.Decrypt(out[:0], msgs[batch-1-i], nil); err != nil {
				b.Fatal(err)
			}
			i++
		}
		reportCPUTime(b, cpu)
	})
}

// Raw primitives, for comparison within the same run.

func BenchmarkPrimitiveAES256GCMSealOpen1KiB(b *testing.B) {
	key, nonce := make([]byte, 32), make([]byte, 12)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	pt := make([]byte, benchSize)
	ct := make([]byte, 0, benchSize+16)
	out := make([]byte, 0, benchSize)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		ct = aead.Seal(ct[:0], nonce, pt, nil)
		var err error
		if out, err = aead.Open(out[:0], nonce, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportCPUTime(b, cpu)
}

// BenchmarkPrimitiveAES256GCMKeySetup is aes.NewCipher plus cipher.NewGCM: what a fresh key
// per message costs before any data is processed.
func BenchmarkPrimitiveAES256GCMKeySetup(b *testing.B) {
	key := make([]byte, 32)
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		block, _ := aes.NewCipher(key)
		if _, err := cipher.NewGCM(block); err != nil {
			b.Fatal(err)
		}
	}
	reportCPUTime(b, cpu)
}

func BenchmarkPrimitiveHMACSHA256(b *testing.B) {
	key := make([]byte, 32)
	out := make([]byte, 0, 32)
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		m := hmac.New(sha256.New, key)
		m.Write([]byte{1})
		out = m.Sum(out[:0])
	}
	reportCPUTime(b, cpu)
}

// BenchmarkPrimitiveHMACSHA256Ours is the package's allocation-free HMAC on the same input.
func BenchmarkPrimitiveHMACSHA256Ours(b *testing.B) {
	var key, out [32]byte
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		var k hmacKey
		k.init(&key)
		k.sum(&out, []byte{1}, nil, nil)
	}
	reportCPUTime(b, cpu)
}

func BenchmarkPrimitiveHKDFSHA256(b *testing.B) {
	ikm, salt := make([]byte, 32), make([]byte, 32)
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		if _, err := hkdf.Key(sha256.New, ikm, salt, infoMessage, 44); err != nil {
			b.Fatal(err)
		}
	}
	reportCPUTime(b, cpu)
}

// BenchmarkPrimitiveHKDFSHA256Ours is the package's allocation-free HKDF on the same input.
func BenchmarkPrimitiveHKDFSHA256Ours(b *testing.B) {
	var salt [32]byte
	ikm := make([]byte, 32)
	var out [44]byte
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		hkdfSHA256(out[:], &salt, ikm, infoMessage)
	}
	reportCPUTime(b, cpu)
}

func BenchmarkPrimitiveP256ECDH(b *testing.B) {
	r := testStream(4)
	priv, peer := testKey(b, r), testKey(b, r).PublicKey()
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		if _, err := priv.ECDH(peer); err != nil {
			b.Fatal(err)
		}
	}
	reportCPUTime(b, cpu)
}

func BenchmarkPrimitiveP256KeyFromSeed(b *testing.B) {
	seed := make([]byte, 32)
	seed[31] = 1
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		if _, err := ecdh.P256().NewPrivateKey(seed); err != nil {
			b.Fatal(err)
		}
	}
	reportCPUTime(b, cpu)
}
