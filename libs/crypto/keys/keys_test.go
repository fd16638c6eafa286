package keys_test

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
)

// invalidPoints returns encodings every P-256 public key parser must reject.
func invalidPoints(t *testing.T) map[string][]byte {
	t.Helper()
	valid := keystest.ECDHKey("invalid-points").PublicKey().Bytes()
	offCurve := bytes.Clone(valid)
	offCurve[64] ^= 1
	compressed := append([]byte{0x02 | valid[64]&1}, valid[1:33]...)
	infinity := []byte{0}
	xTooBig := bytes.Repeat([]byte{0xff}, 65)
	xTooBig[0] = 4
	return map[string][]byte{
		"off curve":  offCurve,
		"compressed": compressed,
		"infinity":   infinity,
		"empty":      nil,
		"truncated":  valid[:64],
		"long":       append(bytes.Clone(valid), 0),
		"x >= p":     xTooBig,
		"zeros":      append([]byte{4}, make([]byte, 64)...),
	}
}

func TestParseIdentityKeyRejectsInvalidPoints(t *testing.T) {
	for name, b := range invalidPoints(t) {
		if _, err := keys.ParseIdentityKey(b); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("%s: got %v, want ErrInvalidKey", name, err)
		}
		if _, err := keys.ParseOneTimePreKeyPublic(1, b); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("%s one-time: got %v, want ErrInvalidKey", name, err)
		}
		if _, err := keys.ParseSignedPreKeyPublic(1, time.Unix(1, 0), b, []byte{1}); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("%s signed: got %v, want ErrInvalidKey", name, err)
		}
	}
}

func TestSignVerify(t *testing.T) {
	alice := keystest.Identity("alice")
	bob := keystest.Identity("bob")
	msg := []byte("challenge 42")
	sig, err := alice.Sign(keys.ContextLoginChallenge, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) > keys.MaxSignatureSize {
		t.Fatalf("signature of %d bytes exceeds %d", len(sig), keys.MaxSignatureSize)
	}
	if err := alice.Public().Verify(keys.ContextLoginChallenge, msg, sig); err != nil {
		t.Fatalf("valid signature rejected: %v", err)
	}
	cases := map[string]error{
		"other context": alice.Public().Verify(keys.ContextRegistration, msg, sig),
		"other message": alice.Public().Verify(keys.ContextLoginChallenge, []byte("challenge 43"), sig),
		"other key":     bob.Public().Verify(keys.ContextLoginChallenge, msg, sig),
		"empty sig":     alice.Public().Verify(keys.ContextLoginChallenge, msg, nil),
		"long sig":      alice.Public().Verify(keys.ContextLoginChallenge, msg, make([]byte, 73)),
	}
	for name, err := range cases {
		if !errors.Is(err, keys.ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
	for i := range sig {
		bad := bytes.Clone(sig)
		bad[i] ^= 0x80
		if err := alice.Public().Verify(keys.ContextLoginChallenge, msg, bad); !errors.Is(err, keys.ErrBadSignature) {
			t.Errorf("flipped byte %d accepted: %v", i, err)
		}
	}
	if _, err := alice.Sign("", msg); err == nil {
		t.Error("empty context accepted")
	}
	if _, err := alice.Sign(keys.Context(bytes.Repeat([]byte("x"), 65)), msg); err == nil {
		t.Error("65-byte context accepted")
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	id, err := keys.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := id.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := keys.ParseIdentity(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Public().Equal(id.Public()) {
		t.Fatal("identity changed across MarshalBinary/ParseIdentity")
	}
	if !bytes.Equal(back.ECDH().PublicKey().Bytes(), id.Public().Bytes()) {
		t.Fatal("ECDH and ECDSA views of the identity disagree")
	}
	pk, err := keys.ParseIdentityKey(id.Public().Bytes())
	if err != nil || !pk.Equal(id.Public()) {
		t.Fatalf("public key round trip: %v", err)
	}
}

func TestParseIdentityErrors(t *testing.T) {
	order := []byte{0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51}
	cases := map[string]struct {
		in   []byte
		want error
	}{
		"empty":         {nil, keys.ErrMalformed},
		"version 2":     {append([]byte{2}, make([]byte, 32)...), keys.ErrUnsupportedVersion},
		"short":         {append([]byte{1}, make([]byte, 31)...), keys.ErrMalformed},
		"long":          {append([]byte{1}, make([]byte, 33)...), keys.ErrMalformed},
		"zero scalar":   {append([]byte{1}, make([]byte, 32)...), keys.ErrMalformed},
		"scalar ==  n":  {append([]byte{1}, order...), keys.ErrMalformed},
		"scalar all ff": {append([]byte{1}, bytes.Repeat([]byte{0xff}, 32)...), keys.ErrMalformed},
	}
	for name, c := range cases {
		if _, err := keys.ParseIdentity(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

func TestBundleRoundTripAndVerify(t *testing.T) {
	dev := keystest.NewDevice("bob")
	for name, b := range map[string]*keys.Bundle{"one-time": dev.Bundle, "last resort": dev.LastResortBundle} {
		enc, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) > keys.MaxBundleSize {
			t.Fatalf("%s: encoded bundle %d bytes exceeds MaxBundleSize %d", name, len(enc), keys.MaxBundleSize)
		}
		back, err := keys.ParseBundle(enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := back.Verify(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, _ := back.MarshalBinary()
		if !bytes.Equal(enc, again) {
			t.Fatalf("%s: re-encoding differs", name)
		}
		for n := range enc {
			if _, err := keys.ParseBundle(enc[:n]); err == nil {
				t.Fatalf("%s: truncation to %d bytes accepted", name, n)
			}
		}
	}
}

func TestBundleVerifyRejectsTampering(t *testing.T) {
	dev := keystest.NewDevice("bob")
	other := keystest.NewDevice("mallory")
	tamper := map[string]func(b *keys.Bundle){
		"foreign identity":     func(b *keys.Bundle) { b.IdentityKey = other.Identity.Public() },
		"foreign signed key":   func(b *keys.Bundle) { b.SignedPreKey = other.Bundle.SignedPreKey },
		"foreign kem key":      func(b *keys.Bundle) { b.KEMPreKey = other.Bundle.KEMPreKey },
		"signed prekey id":     func(b *keys.Bundle) { b.SignedPreKey.ID++ },
		"kem prekey id":        func(b *keys.Bundle) { b.KEMPreKey.ID++ },
		"last resort flag":     func(b *keys.Bundle) { b.KEMPreKey.LastResort = !b.KEMPreKey.LastResort },
		"spk as kem signature": func(b *keys.Bundle) { b.KEMPreKey.Signature = b.SignedPreKey.Signature },
	}
	for name, f := range tamper {
		enc, _ := dev.Bundle.MarshalBinary()
		b, err := keys.ParseBundle(enc)
		if err != nil {
			t.Fatal(err)
		}
		f(b)
		if err := b.Verify(); !errors.Is(err, keys.ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
	if err := (&keys.Bundle{IdentityKey: dev.Identity.Public()}).Verify(); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("incomplete bundle: got %v, want ErrMalformed", err)
	}
}

func TestParseBundleErrors(t *testing.T) {
	enc, _ := keystest.NewDevice("bob").Bundle.MarshalBinary()
	version := bytes.Clone(enc)
	version[0] = 9
	if _, err := keys.ParseBundle(version); !errors.Is(err, keys.ErrUnsupportedVersion) {
		t.Errorf("unknown version: got %v", err)
	}
	if _, err := keys.ParseBundle(append(bytes.Clone(enc), 0)); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("trailing byte: got %v", err)
	}
	offCurve := bytes.Clone(enc)
	offCurve[65] ^= 1 // last byte of the identity key's Y coordinate
	if _, err := keys.ParseBundle(offCurve); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("off-curve identity: got %v", err)
	}
}

func TestPreKeyStoreLifecycle(t *testing.T) {
	id := keystest.Identity("store")
	s := keys.NewPreKeyStore()
	spk, err := s.GenerateSignedPreKey(id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := spk.Verify(id.Public()); err != nil {
		t.Fatal(err)
	}
	opks, err := s.GenerateOneTimePreKeys(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range opks {
		if k.ID == spk.ID {
			t.Fatalf("one-time and signed EC prekeys share id %d", k.ID)
		}
	}
	kems, err := s.GenerateKEMPreKeys(id, 2, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lr, err := s.GenerateLastResortKEMPreKey(id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(kems, lr) {
		if err := k.Verify(id.Public()); err != nil {
			t.Fatal(err)
		}
	}
	if !lr.LastResort || kems[0].LastResort {
		t.Fatal("last-resort flags wrong")
	}
	if n, k := s.Counts(); n != 3 || k != 2 {
		t.Fatalf("Counts = %d, %d; want 3, 2", n, k)
	}

	got, err := s.OneTimePreKey(opks[1].ID)
	if err != nil || !got.PrivateKey().PublicKey().Equal(opks[1].Key) {
		t.Fatalf("OneTimePreKey: %v", err)
	}
	if err := s.ConsumeOneTimePreKey(opks[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OneTimePreKey(opks[1].ID); !errors.Is(err, keys.ErrPreKeyUsed) {
		t.Fatalf("used one-time prekey: got %v, want ErrPreKeyUsed", err)
	}
	if err := s.ConsumeOneTimePreKey(opks[1].ID); !errors.Is(err, keys.ErrPreKeyUsed) {
		t.Fatalf("second consume: got %v, want ErrPreKeyUsed", err)
	}
	if _, err := s.OneTimePreKey(1000); !errors.Is(err, keys.ErrUnknownPreKey) {
		t.Fatalf("never-issued id: got %v, want ErrUnknownPreKey", err)
	}
	if _, err := s.SignedPreKey(77); !errors.Is(err, keys.ErrUnknownPreKey) {
		t.Fatalf("unknown signed prekey: got %v", err)
	}
	if err := s.ConsumeKEMPreKey(kems[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KEMPreKey(kems[0].ID); !errors.Is(err, keys.ErrPreKeyUsed) {
		t.Fatalf("used kem prekey: got %v", err)
	}
	for range 3 {
		if err := s.ConsumeKEMPreKey(lr.ID); err != nil {
			t.Fatalf("last-resort consume: %v", err)
		}
	}
	if _, err := s.KEMPreKey(lr.ID); err != nil {
		t.Fatalf("last-resort key gone after use: %v", err)
	}

	enc, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := keys.ParsePreKeyStore(enc)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.MarshalBinary()
	if !bytes.Equal(enc, again) {
		t.Fatal("store re-encoding differs")
	}
	if _, err := back.OneTimePreKey(opks[1].ID); !errors.Is(err, keys.ErrPreKeyUsed) {
		t.Fatalf("used key revived by restore: %v", err)
	}
	if k, err := back.KEMPreKey(lr.ID); err != nil || !k.LastResort() || !bytes.Equal(k.PrivateKey().EncapsulationKey().Bytes(), lr.Key.Bytes()) {
		t.Fatalf("last-resort key after restore: %v", err)
	}
	if n, k := back.Counts(); n != 2 || k != 1 {
		t.Fatalf("Counts after restore = %d, %d; want 2, 1", n, k)
	}
	// A consumed id must not come back through Add.
	old, _ := keys.NewOneTimePreKey(opks[1].ID, keystest.ECDHKey("x"))
	if err := back.AddOneTimePreKey(old); !errors.Is(err, keys.ErrPreKeyUsed) {
		t.Fatalf("re-adding consumed id: got %v, want ErrPreKeyUsed", err)
	}
	if err := back.RemoveSignedPreKey(spk.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := back.SignedPreKey(spk.ID); !errors.Is(err, keys.ErrUnknownPreKey) {
		t.Fatalf("removed signed prekey: %v", err)
	}
}

func TestParsePreKeyStoreErrors(t *testing.T) {
	enc, _ := keystest.NewDevice("bob").Store.MarshalBinary()
	if _, err := keys.ParsePreKeyStore(append([]byte{3}, enc[1:]...)); !errors.Is(err, keys.ErrUnsupportedVersion) {
		t.Errorf("unknown version: %v", err)
	}
	for n := range enc {
		if _, err := keys.ParsePreKeyStore(enc[:n]); !errors.Is(err, keys.ErrMalformed) {
			t.Fatalf("truncation to %d bytes: got %v", n, err)
		}
	}
	// A forged count larger than the input must fail before allocating.
	huge := append([]byte{1}, make([]byte, 12)...)
	huge = append(huge, 0, 1, 0, 0)
	if _, err := keys.ParsePreKeyStore(huge); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("forged count: %v", err)
	}
}

// TestParsePreKeyStoreCanonical: the decoder accepts only the order MarshalBinary writes, so a
// store has one encoding (FuzzParsePreKeyStore found a reordered one accepted).
func TestParsePreKeyStoreCanonical(t *testing.T) {
	st := keys.NewPreKeyStore()
	if _, err := st.GenerateOneTimePreKeys(2); err != nil {
		t.Fatal(err)
	}
	enc, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.ParsePreKeyStore(enc); err != nil {
		t.Fatalf("canonical store: %v", err)
	}
	// Find the two one-time entries (id, scalar) by their ids and swap them.
	const entry = 4 + keys.PrivateKeySize
	first := bytes.Index(enc, []byte{0, 0, 0, 2, 0, 0, 0, 1})
	if first < 0 {
		t.Fatal("one-time prekey count and first id not found in the encoding")
	}
	first += 4
	swapped := bytes.Clone(enc)
	copy(swapped[first:], enc[first+entry:first+2*entry])
	copy(swapped[first+entry:], enc[first:first+entry])
	if _, err := keys.ParsePreKeyStore(swapped); !errors.Is(err, keys.ErrMalformed) {
		t.Fatalf("store with descending one-time ids: got %v, want ErrMalformed", err)
	}
}

func TestNonP256KeysRejected(t *testing.T) {
	x, err := ecdh.X25519().NewPrivateKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.NewOneTimePreKey(1, x); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("X25519 one-time prekey: %v", err)
	}
	if _, err := keys.NewSignedPreKey(keystest.Identity("a"), 1, time.Now(), x); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("X25519 signed prekey: %v", err)
	}
}

// allocatedBytes reports the bytes f allocates, averaged over a few runs.
func allocatedBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 10
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// TestDecodersBoundAllocation feeds forged counts and lengths: decoding must fail without
// allocating in proportion to what the input claims.
func TestDecodersBoundAllocation(t *testing.T) {
	// Claims 65536 one-time prekeys (2.2 MB) in a 21-byte input.
	forged := []byte{1, 0, 0, 0, 9, 0, 0, 0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	if n := allocatedBytes(func() { _, _ = keys.ParsePreKeyStore(forged) }); n > 4096 {
		t.Errorf("ParsePreKeyStore allocated %d bytes for a forged count", n)
	}
	huge := make([]byte, 1<<20)
	huge[0] = 1
	if n := allocatedBytes(func() { _, _ = keys.ParseBundle(huge) }); n > 4096 {
		t.Errorf("ParseBundle allocated %d bytes for an oversized input", n)
	}
}
