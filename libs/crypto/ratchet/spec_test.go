package ratchet

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// This file re-derives the frozen vectors from docs/crypto/ratchet.md with the standard library
// alone: a second, deliberately plain implementation of the Double Ratchet as the specification's
// pseudocode writes it (RatchetEncrypt/RatchetDecrypt, their HE variants, DHRatchet,
// SkipMessageKeys, TrySkippedMessageKeys) that shares no code with the package. It replays every
// transcript of testdata/vectors.json, so the header-encryption path, every DH ratchet step and
// every skipped-key path of the vectors is checked against the documented construction and not
// only against this code.

// specParty is one party's state, named as in the specification.
type specParty struct {
	he                   bool
	dhs                  *ecdh.PrivateKey
	dhr                  []byte
	rk, cks, ckr         []byte
	ns, nr, pn           uint32
	hks, hkr, nhks, nhkr []byte
	mkSkipped            map[string][]byte // MKSKIPPED: chain id (DHr or HKr) || N -> MK
	entropy              io.Reader
}

func specHKDF(t *testing.T, salt, ikm []byte, info string, n int) []byte {
	t.Helper()
	out, err := hkdf.Key(sha256.New, ikm, salt, info, n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func specHMAC(key []byte, b byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte{b})
	return m.Sum(nil)
}

// kdfCK: MK = HMAC(ck, 0x01), CK' = HMAC(ck, 0x02).
func specKDFCK(ck []byte) (next, mk []byte) { return specHMAC(ck, 0x02), specHMAC(ck, 0x01) }

// kdfRK: HKDF(salt = rk, IKM = dh_out, info = "Guardyn Ratchet v1 root"), 96 bytes.
func specKDFRK(t *testing.T, rk, dhOut []byte) (root, chain, nextHeader []byte) {
	out := specHKDF(t, rk, dhOut, "Guardyn Ratchet v1 root", 96)
	return out[:32], out[32:64], out[64:]
}

func specGCM(t *testing.T, key []byte) cipher.AEAD {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// specBodyAEAD: HKDF(salt = 32 zero bytes, IKM = MK, info = "Guardyn Ratchet v2 message" ||
// message nonce), 44 bytes: AES-256-GCM key || GCM nonce.
func specBodyAEAD(t *testing.T, mk, nonce []byte) (cipher.AEAD, []byte) {
	out := specHKDF(t, make([]byte, 32), mk, "Guardyn Ratchet v2 message"+string(nonce), 44)
	return specGCM(t, out[:32]), out[32:]
}

// specGenerateDH is GENERATE_DH from the recorded entropy: 32-byte candidates until one is a
// valid P-256 scalar.
func (p *specParty) generateDH(t *testing.T) *ecdh.PrivateKey {
	for {
		seed := make([]byte, 32)
		if _, err := io.ReadFull(p.entropy, seed); err != nil {
			t.Fatalf("entropy exhausted: %v", err)
		}
		if k, err := ecdh.P256().NewPrivateKey(seed); err == nil {
			return k
		}
	}
}

func specDH(t *testing.T, priv *ecdh.PrivateKey, pub []byte) []byte {
	t.Helper()
	k, err := ecdh.P256().NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	out, err := priv.ECDH(k)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// newSpecParties is RatchetInitAlice(HE) and RatchetInitBob(HE), with the initial keys derived
// as documented: HKDF(zero salt, sk, "Guardyn Ratchet v1 init") = RK0 || HKa || NHKb.
func newSpecParties(t *testing.T, he bool, sk, bobKey []byte, aliceEntropy, bobEntropy io.Reader) (alice, bob *specParty) {
	init := specHKDF(t, make([]byte, 32), sk, "Guardyn Ratchet v1 init", 96)
	rk0, hka, nhkb := init[:32], init[32:64], init[64:]
	bobPriv, err := ecdh.P256().NewPrivateKey(bobKey)
	if err != nil {
		t.Fatal(err)
	}
	alice = &specParty{he: he, entropy: aliceEntropy, mkSkipped: map[string][]byte{}}
	alice.dhs = alice.generateDH(t)
	alice.dhr = bobPriv.PublicKey().Bytes()
	alice.rk, alice.cks, alice.nhks = specKDFRK(t, rk0, specDH(t, alice.dhs, alice.dhr))
	bob = &specParty{he: he, entropy: bobEntropy, mkSkipped: map[string][]byte{}, dhs: bobPriv, rk: rk0}
	if he {
		alice.hks, alice.nhkr = hka, nhkb
		bob.nhks, bob.nhkr = nhkb, hka
	}
	return alice, bob
}

func specHeader(dh []byte, pn, n uint32) []byte {
	h := append([]byte(nil), dh...)
	h = binary.BigEndian.AppendUint32(h, pn)
	return binary.BigEndian.AppendUint32(h, n)
}

// encrypt is RatchetEncrypt / RatchetEncryptHE with the documented wire format.
func (p *specParty) encrypt(t *testing.T, plaintext, ad []byte) []byte {
	var mk []byte
	p.cks, mk = specKDFCK(p.cks)
	nonce := make([]byte, 12)
	if _, err := io.ReadFull(p.entropy, nonce); err != nil {
		t.Fatal(err)
	}
	header := specHeader(p.dhs.PublicKey().Bytes(), p.pn, p.ns)
	p.ns++
	var prefix []byte
	if p.he {
		prefix = append([]byte{0x04}, nonce...)
		prefix = specGCM(t, p.hks).Seal(prefix, nonce, header, []byte{0x04})
	} else {
		prefix = append(append([]byte{0x03}, nonce...), header...)
	}
	aead, gcmNonce := specBodyAEAD(t, mk, nonce)
	return aead.Seal(prefix, gcmNonce, plaintext, append(bytes.Clone(ad), prefix...))
}

func specSkipID(chain []byte, n uint32) string {
	return string(binary.BigEndian.AppendUint32(bytes.Clone(chain), n))
}

// skipMessageKeys is SkipMessageKeys (no MAX_SKIP: the vectors are benign).
func (p *specParty) skipMessageKeys(until uint32) {
	if p.ckr == nil {
		return
	}
	chain := p.dhr
	if p.he {
		chain = p.hkr
	}
	for p.nr < until {
		var mk []byte
		p.ckr, mk = specKDFCK(p.ckr)
		p.mkSkipped[specSkipID(chain, p.nr)] = mk
		p.nr++
	}
}

// dhRatchet is DHRatchet / DHRatchetHE.
func (p *specParty) dhRatchet(t *testing.T, dh []byte, pn uint32) {
	p.pn, p.ns, p.nr = p.ns, 0, 0
	if p.he {
		p.hks, p.hkr = p.nhks, p.nhkr
	}
	p.dhr = dh
	p.rk, p.ckr, p.nhkr = specKDFRK(t, p.rk, specDH(t, p.dhs, p.dhr))
	p.dhs = p.generateDH(t)
	p.rk, p.cks, p.nhks = specKDFRK(t, p.rk, specDH(t, p.dhs, p.dhr))
}

// decrypt is RatchetDecrypt / RatchetDecryptHE, trying header keys in the specification's
// order: skipped chains, then HKr, then NHKr.
func (p *specParty) decrypt(t *testing.T, msg, ad []byte) []byte {
	prefixLen := 1 + 12 + 73
	if p.he {
		prefixLen += 16
	}
	prefix, body := msg[:prefixLen], msg[prefixLen:]
	nonce := prefix[1:13]
	open := func(mk []byte) []byte {
		aead, gcmNonce := specBodyAEAD(t, mk, nonce)
		pt, err := aead.Open(nil, gcmNonce, body, append(bytes.Clone(ad), prefix...))
		if err != nil {
			t.Fatalf("body does not open under the spec-derived key: %v", err)
		}
		return pt
	}
	var header []byte
	var chain []byte
	newChain := false
	if p.he {
		tryKey := func(hk []byte) bool {
			h, err := specGCM(t, hk).Open(nil, nonce, prefix[13:], prefix[:1])
			if err == nil {
				header, chain = h, hk
			}
			return err == nil
		}
		found := false
		for id := range p.mkSkipped {
			if tryKey([]byte(id[:32])) {
				found = true
				break
			}
		}
		switch {
		case found:
		case p.hkr != nil && tryKey(p.hkr):
		case tryKey(p.nhkr):
			newChain = true
		default:
			t.Fatal("no header key opens the header")
		}
	} else {
		header = prefix[13:]
		chain = header[:65]
		newChain = !bytes.Equal(chain, p.dhr)
	}
	dh, pn, n := header[:65], binary.BigEndian.Uint32(header[65:]), binary.BigEndian.Uint32(header[69:])
	if mk, ok := p.mkSkipped[specSkipID(chain, n)]; ok {
		delete(p.mkSkipped, specSkipID(chain, n))
		return open(mk)
	}
	if newChain {
		p.skipMessageKeys(pn)
		p.dhRatchet(t, bytes.Clone(dh), pn)
	}
	p.skipMessageKeys(n)
	var mk []byte
	p.ckr, mk = specKDFCK(p.ckr)
	p.nr++
	return open(mk)
}

// TestVectorsFromSpec replays every frozen transcript with the specification model above: each
// sent message must come out byte for byte from the recorded entropy, and each received one must
// decrypt to its plaintext, including messages skipped across DH ratchet steps.
func TestVectorsFromSpec(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file vectorFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	var sawHE, sawSkippedAcrossStep bool
	for _, vc := range file.Cases {
		t.Run(vc.Name, func(t *testing.T) {
			alice, bob := newSpecParties(t, vc.HeaderEncryption, unhex(t, vc.SharedKey), unhex(t, vc.ResponderKey),
				bytes.NewReader(unhex(t, vc.InitiatorEntropy)), bytes.NewReader(unhex(t, vc.ResponderEntropy)))
			parties := map[string]*specParty{"initiator": alice, "responder": bob}
			var sent [][]byte
			for i, ev := range vc.Events {
				p := parties[ev.Party]
				switch ev.Op {
				case "send":
					got := p.encrypt(t, unhex(t, ev.Plaintext), unhex(t, ev.AD))
					if want := unhex(t, ev.Message); !bytes.Equal(got, want) {
						t.Fatalf("event %d: spec model sends\n%x\nvector has\n%x", i, got, want)
					}
					sent = append(sent, got)
				case "receive":
					skippedBefore := len(p.mkSkipped)
					pt := p.decrypt(t, sent[ev.Send], unhex(t, ev.AD))
					if want := unhex(t, ev.Plaintext); !bytes.Equal(pt, want) {
						t.Fatalf("event %d: plaintext %q, want %q", i, pt, want)
					}
					if len(p.mkSkipped) < skippedBefore && p.pn > 0 {
						sawSkippedAcrossStep = true
					}
				default:
					t.Fatalf("event %d: op %q", i, ev.Op)
				}
			}
			if len(alice.mkSkipped)+len(bob.mkSkipped) != 0 {
				t.Errorf("skipped keys left unused: %d, %d", len(alice.mkSkipped), len(bob.mkSkipped))
			}
		})
		sawHE = sawHE || vc.HeaderEncryption
	}
	if !sawHE || !sawSkippedAcrossStep {
		t.Fatalf("vectors cover header encryption: %t, skipped keys used after a DH step: %t; want both", sawHE, sawSkippedAcrossStep)
	}
}
