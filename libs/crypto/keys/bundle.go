package keys

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Bundle is what the server returns for one device when someone wants to start a session with it:
// the identity key, the current signed prekey, at most one one-time EC prekey (nil when the device
// has run out), and one ML-KEM prekey (a one-time key, or the last-resort key when none is left).
type Bundle struct {
	IdentityKey   *IdentityKey
	SignedPreKey  *SignedPreKeyPublic
	OneTimePreKey *OneTimePreKeyPublic // optional
	KEMPreKey     *KEMPreKeyPublic
}

// MaxBundleSize bounds an encoded bundle: version, identity, signed prekey with creation time
// and signature, one-time prekey, KEM prekey with flag, creation time and signature.
const MaxBundleSize = 1 + PublicKeySize + (4 + 8 + PublicKeySize + 1 + MaxSignatureSize) +
	(1 + 4 + PublicKeySize) + (4 + 1 + 8 + KEMPublicKeySize + 1 + MaxSignatureSize)

// bundleVersion 2 carries signed creation times; version 1 did not and is refused.
const bundleVersion = 2

// Verify checks that every required part is present and that the signed prekey and the KEM prekey
// carry valid signatures by the bundle's identity key. Initiators must call it (pqxdh does) before
// using a bundle; the server may call it to refuse bad uploads early.
func (b *Bundle) Verify() error {
	if b.IdentityKey == nil || b.SignedPreKey == nil || b.KEMPreKey == nil {
		return fmt.Errorf("bundle missing identity key, signed prekey or kem prekey: %w", ErrMalformed)
	}
	if err := b.SignedPreKey.Verify(b.IdentityKey); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := b.KEMPreKey.Verify(b.IdentityKey); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// CheckAge fails with [ErrPreKeyExpired] unless the signed prekey and the KEM prekey were
// created within [MaxPreKeyAge] before now and at most [MaxPreKeyClockSkew] after it. The
// creation times are signed, so call it after [Bundle.Verify] (pqxdh.Initiate does both): an
// old signed or last-resort prekey may have leaked since, and the device should have replaced
// it long ago.
func (b *Bundle) CheckAge(now time.Time) error {
	for _, k := range []struct {
		what    string
		id      uint32
		created time.Time
	}{{"signed prekey", b.SignedPreKey.ID, b.SignedPreKey.Created}, {"kem prekey", b.KEMPreKey.ID, b.KEMPreKey.Created}} {
		if age := now.Sub(k.created); age > MaxPreKeyAge || age < -MaxPreKeyClockSkew {
			return fmt.Errorf("bundle: %s %d created %v, %v before %v (limits %v, -%v): %w",
				k.what, k.id, k.created.UTC(), age.Round(time.Second), now.UTC(), MaxPreKeyAge, MaxPreKeyClockSkew, ErrPreKeyExpired)
		}
	}
	return nil
}

// MarshalBinary encodes the bundle (version 2; creation times are Unix seconds):
//
//	u8 version | identity key (65)
//	| u32 spk id | u64 spk created | spk (65) | u8 sig len | sig
//	| u8 has opk | [u32 opk id | opk (65)]
//	| u32 kem id | u8 last resort | u64 kem created | kem key (1184) | u8 sig len | sig
func (b *Bundle) MarshalBinary() ([]byte, error) {
	if b.IdentityKey == nil || b.SignedPreKey == nil || b.KEMPreKey == nil {
		return nil, fmt.Errorf("bundle missing identity key, signed prekey or kem prekey: %w", ErrMalformed)
	}
	out := make([]byte, 0, MaxBundleSize)
	out = append(out, bundleVersion)
	out = append(out, b.IdentityKey.raw[:]...)
	out = binary.BigEndian.AppendUint32(out, b.SignedPreKey.ID)
	out = appendCreated(out, b.SignedPreKey.Created)
	out = append(out, b.SignedPreKey.Key.Bytes()...)
	out = appendSignature(out, b.SignedPreKey.Signature)
	out = appendBool(out, b.OneTimePreKey != nil)
	if b.OneTimePreKey != nil {
		out = binary.BigEndian.AppendUint32(out, b.OneTimePreKey.ID)
		out = append(out, b.OneTimePreKey.Key.Bytes()...)
	}
	out = binary.BigEndian.AppendUint32(out, b.KEMPreKey.ID)
	out = appendBool(out, b.KEMPreKey.LastResort)
	out = appendCreated(out, b.KEMPreKey.Created)
	out = append(out, b.KEMPreKey.Key.Bytes()...)
	out = appendSignature(out, b.KEMPreKey.Signature)
	return out, nil
}

// ParseBundle decodes the output of [Bundle.MarshalBinary], validating every key. It does not
// check signatures: call [Bundle.Verify].
func ParseBundle(data []byte) (*Bundle, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("bundle: empty input: %w", ErrMalformed)
	}
	if data[0] != bundleVersion {
		return nil, fmt.Errorf("bundle version %d: %w", data[0], ErrUnsupportedVersion)
	}
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("bundle of %d bytes exceeds %d: %w", len(data), MaxBundleSize, ErrMalformed)
	}
	r := &reader{b: data[1:]}
	ik := r.bytes(PublicKeySize, "identity key")
	spkID := r.u32("signed prekey id")
	spkCreated := r.created("signed prekey")
	spk := r.bytes(PublicKeySize, "signed prekey")
	spkSig := r.signature("signed prekey")
	hasOPK := r.bool("one-time prekey presence")
	var opkID uint32
	var opk []byte
	if hasOPK {
		opkID = r.u32("one-time prekey id")
		opk = r.bytes(PublicKeySize, "one-time prekey")
	}
	kemID := r.u32("kem prekey id")
	lastResort := r.bool("last resort")
	kemCreated := r.created("kem prekey")
	kem := r.bytes(KEMPublicKeySize, "kem prekey")
	kemSig := r.signature("kem prekey")
	if err := r.done("bundle"); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}

	b := &Bundle{}
	var err error
	if b.IdentityKey, err = ParseIdentityKey(ik); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if b.SignedPreKey, err = ParseSignedPreKeyPublic(spkID, spkCreated, spk, spkSig); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if hasOPK {
		if b.OneTimePreKey, err = ParseOneTimePreKeyPublic(opkID, opk); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
	}
	if b.KEMPreKey, err = ParseKEMPreKeyPublic(kemID, kemCreated, kem, lastResort, kemSig); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return b, nil
}
