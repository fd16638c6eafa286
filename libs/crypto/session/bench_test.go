package session_test

import (
	"crypto/aes"
	"crypto/cipher"
	"runtime"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
	"github.com/guardyn/guardyn/libs/crypto/ratchet"
	"github.com/guardyn/guardyn/libs/crypto/session"
)

//	go test ./libs/crypto/session -run '^$' -bench . -benchtime=1s -count=3
//
// The full PQXDH handshake and its primitives are benchmarked together in package pqxdh; here
// the session-level handshake adds the ratchet set-up and the first message.

// measureCPU locks the benchmark goroutine to its thread and returns a function, to defer, that
// reports the thread's CPU time per op: wall-clock ns/op on this shared machine swings with other
// people's load.
func measureCPU(b *testing.B) func() {
	runtime.LockOSThread()
	start := cpuClock()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuClock()-start).Nanoseconds())/float64(b.N), cpuClockName+"-ns/op")
		}
		runtime.UnlockOSThread()
	}
}

// reusableStore lets one prekey bundle serve every benchmark iteration by never consuming keys.
type reusableStore struct{ session.PreKeyStore }

func (reusableStore) ConsumeOneTimePreKey(uint32) error { return nil }
func (reusableStore) ConsumeKEMPreKey(uint32) error     { return nil }

// BenchmarkSessionHandshake is Initiate, the first (prekey) message and Accept, with a one-time
// EC prekey (DH4) and a one-time KEM prekey.
func BenchmarkSessionHandshake(b *testing.B) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	store := reusableStore{bob.Store}
	plaintext := make([]byte, 64)
	cfg := session.Config{HeaderEncryption: true}
	b.ReportAllocs()
	defer measureCPU(b)()
	for b.Loop() {
		s, err := session.Initiate(alice, bob.Bundle, cfg)
		if err != nil {
			b.Fatal(err)
		}
		msg, err := s.Encrypt(nil, plaintext)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := session.Accept(bob.Identity, store, msg, alice.Public(), cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncryptDecrypt1KiB is one 1 KiB message encrypted by Alice and decrypted by Bob in
// order, in steady state, with output buffers reused.
func BenchmarkEncryptDecrypt1KiB(b *testing.B) {
	for name, cfg := range configs {
		b.Run(name, func(b *testing.B) {
			p := newPair(b, cfg)
			plaintext := make([]byte, 1024)
			msg := make([]byte, 0, len(plaintext)+p.alice.Overhead())
			out := make([]byte, 0, len(plaintext))
			b.SetBytes(int64(len(plaintext)))
			b.ReportAllocs()
			defer measureCPU(b)()
			for b.Loop() {
				m, err := p.alice.Encrypt(msg[:0], plaintext)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.bob.Decrypt(out[:0], m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRatchetEncryptDecrypt1KiB is the same exchange on bare ratchet states, so the
// difference to BenchmarkEncryptDecrypt1KiB is what the session layer adds.
func BenchmarkRatchetEncryptDecrypt1KiB(b *testing.B) {
	for name, cfg := range configs {
		b.Run(name, func(b *testing.B) {
			rcfg := ratchet.Config{HeaderEncryption: cfg.HeaderEncryption}
			sk := make([]byte, 32)
			bobKey := keystest.ECDHKey("bob ratchet")
			alice, err := ratchet.NewInitiator(sk, bobKey.PublicKey(), rcfg)
			if err != nil {
				b.Fatal(err)
			}
			bob, err := ratchet.NewResponder(sk, bobKey, rcfg)
			if err != nil {
				b.Fatal(err)
			}
			ad := make([]byte, 130)
			for _, step := range []struct{ from, to *ratchet.State }{{alice, bob}, {bob, alice}} {
				m, err := step.from.Encrypt(nil, []byte("warm up"), ad)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := step.to.Decrypt(nil, m, ad); err != nil {
					b.Fatal(err)
				}
			}
			plaintext := make([]byte, 1024)
			msg := make([]byte, 0, len(plaintext)+alice.Overhead())
			out := make([]byte, 0, len(plaintext))
			b.SetBytes(int64(len(plaintext)))
			b.ReportAllocs()
			defer measureCPU(b)()
			for b.Loop() {
				m, err := alice.Encrypt(msg[:0], plaintext, ad)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bob.Decrypt(out[:0], m, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPrimitiveAESGCM1KiB is the AEAD floor of one message: AES-256-GCM key set-up, seal
// and open of 1 KiB (the ratchet uses a fresh key per message).
func BenchmarkPrimitiveAESGCM1KiB(b *testing.B) {
	key := make([]byte, 32)
	nonce := make([]byte, 12)
	plaintext := make([]byte, 1024)
	buf := make([]byte, 0, 1024+16)
	out := make([]byte, 0, 1024)
	b.SetBytes(1024)
	b.ReportAllocs()
	defer measureCPU(b)()
	for b.Loop() {
		block, _ := aes.NewCipher(key)
		aead, _ := cipher.NewGCM(block)
		ct := aead.Seal(buf[:0], nonce, plaintext, nil)
		if _, err := aead.Open(out[:0], nonce, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}
