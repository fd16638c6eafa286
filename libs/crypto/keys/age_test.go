package keys_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
)

// bundleCreated returns a verified bundle of device label whose signed and KEM prekeys were
// signed as created at spkAt and kemAt.
func bundleCreated(t *testing.T, label string, spkAt, kemAt time.Time) *keys.Bundle {
	t.Helper()
	id := keystest.Identity(label)
	spk, err := keys.NewSignedPreKey(id, 1, spkAt, keystest.ECDHKey(label+"/spk"))
	if err != nil {
		t.Fatal(err)
	}
	kem, err := keys.NewKEMPreKey(id, 1, kemAt, keystest.KEMKey(label+"/kem"), true)
	if err != nil {
		t.Fatal(err)
	}
	b := &keys.Bundle{IdentityKey: id.Public(), SignedPreKey: spk.Public(), KEMPreKey: kem.Public()}
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBundleCheckAge: an initiator refuses a signed or KEM prekey signed more than MaxPreKeyAge
// ago, or dated more than MaxPreKeyClockSkew ahead.
func TestBundleCheckAge(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fresh, old, future := now.Add(-time.Hour), now.Add(-keys.MaxPreKeyAge-time.Second), now.Add(keys.MaxPreKeyClockSkew+time.Second)
	for _, tc := range []struct {
		name       string
		spk, kem   time.Time
		wantExpire bool
	}{
		{"fresh", fresh, fresh, false},
		{"at the limits", now.Add(-keys.MaxPreKeyAge), now.Add(keys.MaxPreKeyClockSkew), false},
		{"old signed prekey", old, fresh, true},
		{"old kem prekey", fresh, old, true},
		{"future signed prekey", future, fresh, true},
		{"future kem prekey", fresh, future, true},
	} {
		err := bundleCreated(t, "dev", tc.spk, tc.kem).CheckAge(now)
		if got := errors.Is(err, keys.ErrPreKeyExpired); got != tc.wantExpire || (err != nil && !got) {
			t.Errorf("%s: CheckAge = %v, want expired %t", tc.name, err, tc.wantExpire)
		}
	}
}

// TestCreationTimeIsSigned: a server that redates a prekey breaks its signature.
func TestCreationTimeIsSigned(t *testing.T) {
	b := bundleCreated(t, "dev", time.Unix(1_800_000_000, 0), time.Unix(1_800_000_000, 0))
	spk := *b.SignedPreKey
	spk.Created = spk.Created.Add(time.Hour)
	if err := spk.Verify(b.IdentityKey); !errors.Is(err, keys.ErrBadSignature) {
		t.Errorf("redated signed prekey: %v, want ErrBadSignature", err)
	}
	kem := *b.KEMPreKey
	kem.Created = kem.Created.Add(time.Hour)
	if err := kem.Verify(b.IdentityKey); !errors.Is(err, keys.ErrBadSignature) {
		t.Errorf("redated kem prekey: %v, want ErrBadSignature", err)
	}
	if _, err := keys.ParseSignedPreKeyPublic(1, time.Unix(0, 0), spk.Key.Bytes(), spk.Signature); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("creation time 0: %v, want ErrMalformed", err)
	}
}

// TestPreKeyStoreVersion1Migrates: a store saved before creation times existed still loads; its
// signed and KEM prekeys have the zero creation time (so the client rotates them) and it is
// written back as version 2.
func TestPreKeyStoreVersion1Migrates(t *testing.T) {
	dev := keystest.NewDevice("old")
	spk, err := dev.Store.SignedPreKey(1)
	if err != nil {
		t.Fatal(err)
	}
	opk, err := dev.Store.OneTimePreKey(2)
	if err != nil {
		t.Fatal(err)
	}
	v1 := []byte{1}
	v1 = binary.BigEndian.AppendUint32(v1, 3) // next EC id
	v1 = binary.BigEndian.AppendUint32(v1, 3) // next KEM id
	v1 = binary.BigEndian.AppendUint32(v1, 1)
	v1 = binary.BigEndian.AppendUint32(v1, 1)
	v1 = append(v1, spk.PrivateKey().Bytes()...)
	v1 = append(append(v1, byte(len(spk.Public().Signature))), spk.Public().Signature...)
	v1 = binary.BigEndian.AppendUint32(v1, 1)
	v1 = binary.BigEndian.AppendUint32(v1, 2)
	v1 = append(v1, opk.PrivateKey().Bytes()...)
	v1 = binary.BigEndian.AppendUint32(v1, 2)
	for id := uint32(1); id <= 2; id++ {
		k, err := dev.Store.KEMPreKey(id)
		if err != nil {
			t.Fatal(err)
		}
		v1 = binary.BigEndian.AppendUint32(v1, id)
		v1 = append(v1, map[bool]byte{false: 0, true: 1}[k.LastResort()])
		v1 = append(v1, k.PrivateKey().Bytes()...)
		v1 = append(append(v1, byte(len(k.Public().Signature))), k.Public().Signature...)
	}
	st, err := keys.ParsePreKeyStore(v1)
	if err != nil {
		t.Fatalf("version 1 store: %v", err)
	}
	if k := st.NewestSignedPreKey(); k == nil || !k.Created().IsZero() || !bytes.Equal(k.PrivateKey().Bytes(), spk.PrivateKey().Bytes()) {
		t.Fatal("signed prekey of a version 1 store: want the same key with the zero creation time")
	}
	if k := st.NewestLastResortKEMPreKey(); k == nil || !k.Created().IsZero() {
		t.Fatal("last-resort prekey of a version 1 store: want the zero creation time")
	}
	enc, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := keys.ParsePreKeyStore(enc)
	if err != nil || enc[0] != 2 {
		t.Fatalf("migrated store: version %d, %v", enc[0], err)
	}
	if again, _ := back.MarshalBinary(); !bytes.Equal(again, enc) {
		t.Fatal("migrated store does not round-trip")
	}
}

// TestPruneReplaced: rotated-out signed and last-resort prekeys go once older than the cutoff;
// the newest of each kind and one-time keys stay.
func TestPruneReplaced(t *testing.T) {
	id := keystest.Identity("rotating")
	st := keys.NewPreKeyStore()
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		at := t0.Add(time.Duration(i) * 7 * 24 * time.Hour)
		if _, err := st.GenerateSignedPreKey(id, at); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GenerateLastResortKEMPreKey(id, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.GenerateKEMPreKeys(id, 1, t0); err != nil {
		t.Fatal(err)
	}
	// Cut between the first and second generation: only the first of each kind goes.
	if n := st.PruneReplaced(t0.Add(24 * time.Hour)); n != 2 {
		t.Fatalf("pruned %d, want 2", n)
	}
	if n := st.PruneReplaced(t0.Add(1000 * 24 * time.Hour)); n != 2 {
		t.Fatalf("second prune removed %d, want 2 (the newest of each kind stays)", n)
	}
	if k := st.NewestSignedPreKey(); k == nil || !k.Created().Equal(t0.Add(14*24*time.Hour)) {
		t.Fatal("newest signed prekey gone")
	}
	if _, kemOneTime := st.Counts(); kemOneTime != 1 {
		t.Fatal("one-time KEM prekey pruned")
	}
}
