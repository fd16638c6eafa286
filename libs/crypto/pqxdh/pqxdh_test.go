package pqxdh

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
)

func handshake(t *testing.T, alice *keys.Identity, bob *keystest.Device, bundle *keys.Bundle) (*Initiation, *Response) {
	t.Helper()
	init, err := Initiate(alice, bundle)
	if err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	enc, err := init.Header.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(enc)
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}
	resp, err := Respond(bob.Identity, bob.Store, h)
	if err != nil {
		t.Fatalf("Respond: %v", err)
	}
	return init, resp
}

func TestAgreement(t *testing.T) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	for name, bundle := range map[string]*keys.Bundle{"one-time keys": bob.Bundle, "last resort": bob.LastResortBundle} {
		t.Run(name, func(t *testing.T) {
			init, resp := handshake(t, alice, bob, bundle)
			if len(init.SharedKey) != SharedKeySize || !bytes.Equal(init.SharedKey, resp.SharedKey) {
				t.Fatal("shared keys differ")
			}
			kb := sha256.Sum256(append(bundle.KEMPreKey.Key.Bytes(), init.Header.KEMCiphertext...))
			want := append(alice.Public().Bytes(), bob.Identity.Public().Bytes()...)
			want = append(want, kb[:]...)
			if !bytes.Equal(init.AssociatedData, want) || !bytes.Equal(resp.AssociatedData, want) {
				t.Fatal("AD is not IK_A || IK_B || SHA-256(PQPK_B || CT)")
			}
			if !resp.RemoteIdentity.Equal(alice.Public()) || !init.RemoteIdentity.Equal(bob.Identity.Public()) {
				t.Fatal("remote identities wrong")
			}
			if !resp.SignedPreKey.PublicKey().Equal(init.RemoteSignedPreKey) {
				t.Fatal("ratchet keys differ")
			}
			if init.Header.HasOneTimePreKey != (bundle.OneTimePreKey != nil) {
				t.Fatal("DH4 presence does not follow the bundle")
			}
		})
	}
	// Two handshakes against the same bundle use fresh ephemeral keys and KEM randomness.
	a, _ := handshake(t, alice, bob, bob.LastResortBundle)
	b, _ := handshake(t, alice, bob, bob.LastResortBundle)
	if bytes.Equal(a.SharedKey, b.SharedKey) {
		t.Fatal("two handshakes gave the same SK")
	}
}

func TestInitiateRejectsBadBundles(t *testing.T) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	mallory := keystest.NewDevice("mallory")
	cases := map[string]func(b *keys.Bundle){
		"signed prekey signature": func(b *keys.Bundle) {
			b.SignedPreKey.Signature = mallory.Bundle.SignedPreKey.Signature
		},
		"kem prekey signature": func(b *keys.Bundle) { b.KEMPreKey.Signature = mallory.Bundle.KEMPreKey.Signature },
		"kem key swapped":      func(b *keys.Bundle) { b.KEMPreKey.Key = mallory.Bundle.KEMPreKey.Key },
		"signed key swapped":   func(b *keys.Bundle) { b.SignedPreKey.Key = mallory.Bundle.SignedPreKey.Key },
		"identity swapped":     func(b *keys.Bundle) { b.IdentityKey = mallory.Identity.Public() },
		"one-time as last resort": func(b *keys.Bundle) {
			b.KEMPreKey.LastResort = true
		},
	}
	for name, tamper := range cases {
		enc, _ := bob.Bundle.MarshalBinary()
		b, err := keys.ParseBundle(enc)
		if err != nil {
			t.Fatal(err)
		}
		tamper(b)
		if _, err := Initiate(alice, b); !errors.Is(err, keys.ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
}

func TestRespondRejects(t *testing.T) {
	alice := keystest.Identity("alice")
	init, err := Initiate(alice, keystest.NewDevice("bob").Bundle)
	if err != nil {
		t.Fatal(err)
	}
	otherEK := keystest.ECDHKey("other").PublicKey()
	cases := map[string]struct {
		tamper func(h *Header)
		want   error
	}{
		"unknown signed prekey":  {func(h *Header) { h.SignedPreKeyID = 9 }, keys.ErrUnknownPreKey},
		"unknown kem prekey":     {func(h *Header) { h.KEMPreKeyID = 9 }, keys.ErrUnknownPreKey},
		"unknown one-time":       {func(h *Header) { h.OneTimePreKeyID = 9 }, keys.ErrUnknownPreKey},
		"missing kem ciphertext": {func(h *Header) { h.KEMCiphertext = nil }, ErrMissingKEMCiphertext},
		"short kem ciphertext":   {func(h *Header) { h.KEMCiphertext = h.KEMCiphertext[:100] }, ErrMalformed},
		"no ephemeral key":       {func(h *Header) { h.EphemeralKey = nil }, ErrMalformed},
		"X25519 ephemeral key": {func(h *Header) {
			x, _ := ecdh.X25519().NewPrivateKey(make([]byte, 32))
			h.EphemeralKey = x.PublicKey()
		}, ErrMalformed},
		"other ephemeral key": {func(h *Header) { h.EphemeralKey = otherEK }, nil},
	}
	for name, c := range cases {
		bob := keystest.NewDevice("bob")
		h := *init.Header
		c.tamper(&h)
		resp, err := Respond(bob.Identity, bob.Store, &h)
		if c.want == nil {
			if err != nil || bytes.Equal(resp.SharedKey, init.SharedKey) {
				t.Errorf("%s: tampered header gave the same SK (err %v)", name, err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

func TestOneTimePreKeyUsedTwice(t *testing.T) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	init, resp := handshake(t, alice, bob, bob.Bundle)
	if !bytes.Equal(init.SharedKey, resp.SharedKey) {
		t.Fatal("shared keys differ")
	}
	// The session layer consumes the one-time keys once the first message authenticates.
	if err := bob.Store.ConsumeOneTimePreKey(init.Header.OneTimePreKeyID); err != nil {
		t.Fatal(err)
	}
	if err := bob.Store.ConsumeKEMPreKey(init.Header.KEMPreKeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := Respond(bob.Identity, bob.Store, init.Header); !errors.Is(err, keys.ErrPreKeyUsed) {
		t.Fatalf("replayed header: got %v, want ErrPreKeyUsed", err)
	}
	// A second initiator given the same (stale) bundle is refused too.
	carol, err := Initiate(keystest.Identity("carol"), bob.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Respond(bob.Identity, bob.Store, carol.Header); !errors.Is(err, keys.ErrPreKeyUsed) {
		t.Fatalf("stale bundle: got %v, want ErrPreKeyUsed", err)
	}
}

func TestWrongRecipient(t *testing.T) {
	alice := keystest.Identity("alice")
	init, err := Initiate(alice, keystest.NewDevice("bob").Bundle)
	if err != nil {
		t.Fatal(err)
	}
	// Eve's device happens to hold prekeys with the same ids: she still derives another SK.
	eve := keystest.NewDevice("eve")
	resp, err := Respond(eve.Identity, eve.Store, init.Header)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(resp.SharedKey, init.SharedKey) {
		t.Fatal("wrong recipient derived the initiator's SK")
	}
}

func TestKEMCiphertextTamperingChangesKey(t *testing.T) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	init, err := Initiate(alice, bob.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 500, mlkem.CiphertextSize768 - 1} {
		h := *init.Header
		h.KEMCiphertext = bytes.Clone(h.KEMCiphertext)
		h.KEMCiphertext[i] ^= 1
		resp, err := Respond(bob.Identity, bob.Store, &h)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(resp.SharedKey, init.SharedKey) {
			t.Fatalf("flipped ciphertext byte %d kept SK", i)
		}
	}
}

func TestHeaderEncoding(t *testing.T) {
	bob := keystest.NewDevice("bob")
	for name, bundle := range map[string]*keys.Bundle{"opk": bob.Bundle, "no opk": bob.LastResortBundle} {
		init, err := Initiate(keystest.Identity("alice"), bundle)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := init.Header.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) > MaxHeaderSize {
			t.Fatalf("%s: header %d bytes > MaxHeaderSize", name, len(enc))
		}
		h, err := ParseHeader(enc)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := h.MarshalBinary()
		if !bytes.Equal(enc, again) {
			t.Fatalf("%s: re-encoding differs", name)
		}
		for n := range enc {
			if _, err := ParseHeader(enc[:n]); err == nil {
				t.Fatalf("%s: truncation to %d accepted", name, n)
			}
		}
		if _, err := ParseHeader(append(bytes.Clone(enc), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: trailing byte: %v", name, err)
		}
		for _, version := range []byte{0, 1, 3} { // 1: PQXDH v1, without the KEM binding
			v := bytes.Clone(enc)
			v[0] = version
			if _, err := ParseHeader(v); !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("%s: version %d: %v", name, version, err)
			}
		}
		offCurve := bytes.Clone(enc)
		offCurve[1+65+64] ^= 1 // last byte of EK_A
		if _, err := ParseHeader(offCurve); !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatalf("%s: off-curve ephemeral key: %v", name, err)
		}
		offCurve = bytes.Clone(enc)
		offCurve[65] ^= 1 // last byte of IK_A
		if _, err := ParseHeader(offCurve); !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatalf("%s: off-curve identity key: %v", name, err)
		}
		// An empty ciphertext: cut the ciphertext and set its length to zero.
		noCT := bytes.Clone(enc[:len(enc)-mlkem.CiphertextSize768])
		noCT[len(noCT)-2], noCT[len(noCT)-1] = 0, 0
		if _, err := ParseHeader(noCT); !errors.Is(err, ErrMissingKEMCiphertext) {
			t.Fatalf("%s: empty ciphertext: %v", name, err)
		}
		if _, err := (&Header{IdentityKey: h.IdentityKey, EphemeralKey: h.EphemeralKey}).MarshalBinary(); !errors.Is(err, ErrMissingKEMCiphertext) {
			t.Fatalf("%s: marshal without ciphertext: %v", name, err)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	bob := keystest.NewDevice("bob")
	for _, b := range []*keys.Bundle{bob.Bundle, bob.LastResortBundle} {
		init, err := Initiate(keystest.Identity("alice"), b)
		if err != nil {
			f.Fatal(err)
		}
		enc, _ := init.Header.MarshalBinary()
		f.Add(enc)
		f.Add(enc[:140])
	}
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			return
		}
		enc, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatal("accepted header does not re-encode to its input")
		}
		// Whatever the header says, Respond must fail cleanly or derive some key.
		if resp, err := Respond(bob.Identity, bob.Store, h); err == nil && len(resp.SharedKey) != SharedKeySize {
			t.Fatal("short shared key")
		}
	})
}

// TestKEMBinding: SK and AD depend on the KEM public key and ciphertext themselves, not only on
// the KEM's shared secret. A KEM that gave the same secret for another ciphertext or another
// public key (re-encapsulation) must not give the same session: here a stand-in KEM returns one
// fixed secret whatever it is given.
func TestKEMBinding(t *testing.T) {
	alice := keystest.Identity("alice")
	bob := keystest.NewDevice("bob")
	other := keystest.NewDevice("bob") // same identity and EC prekeys, other signatures
	otherKEM, err := keys.NewKEMPreKey(other.Identity, bob.Bundle.KEMPreKey.ID, time.Now(), keystest.KEMKey("bob/other-kem"), false)
	if err != nil {
		t.Fatal(err)
	}
	otherBundle := *bob.Bundle
	otherBundle.KEMPreKey = otherKEM.Public()
	ss := bytes.Repeat([]byte{7}, 32)
	ct := func(fill byte) []byte { return bytes.Repeat([]byte{fill}, mlkem.CiphertextSize768) }
	run := func(bundle *keys.Bundle, ciphertext []byte) *Initiation {
		t.Helper()
		fixed := func(*mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			return bytes.Clone(ss), bytes.Clone(ciphertext), nil
		}
		init, err := initiate(alice, bundle, time.Now(), keystest.ECDHKey("alice/ek/binding"), fixed)
		if err != nil {
			t.Fatal(err)
		}
		return init
	}
	base := run(bob.Bundle, ct(1))
	for name, init := range map[string]*Initiation{
		"other ciphertext": run(bob.Bundle, ct(2)),
		"other KEM key":    run(&otherBundle, ct(1)),
	} {
		if bytes.Equal(init.SharedKey, base.SharedKey) {
			t.Errorf("%s, same KEM secret: same SK", name)
		}
		if bytes.Equal(init.AssociatedData, base.AssociatedData) {
			t.Errorf("%s, same KEM secret: same AD", name)
		}
	}
}

// TestInitiateRefusesOldPreKeys: a correctly signed bundle whose signed prekey was created more
// than keys.MaxPreKeyAge ago is refused before any key agreement.
func TestInitiateRefusesOldPreKeys(t *testing.T) {
	bob := keystest.Identity("bob")
	spk, err := keys.NewSignedPreKey(bob, 1, time.Now().Add(-keys.MaxPreKeyAge-time.Hour), keystest.ECDHKey("bob/old-spk"))
	if err != nil {
		t.Fatal(err)
	}
	kem, err := keys.NewKEMPreKey(bob, 1, time.Now(), keystest.KEMKey("bob/kem"), true)
	if err != nil {
		t.Fatal(err)
	}
	bundle := &keys.Bundle{IdentityKey: bob.Public(), SignedPreKey: spk.Public(), KEMPreKey: kem.Public()}
	if _, err := Initiate(keystest.Identity("alice"), bundle); !errors.Is(err, keys.ErrPreKeyExpired) {
		t.Fatalf("Initiate with a %v-old signed prekey: %v, want keys.ErrPreKeyExpired", keys.MaxPreKeyAge+time.Hour, err)
	}
}
