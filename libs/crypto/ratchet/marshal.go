package ratchet

import (
	"crypto/ecdh"
	"encoding/binary"
	"fmt"
	"time"
)

// State encoding, version 2 (integers big-endian; absent keys are written as zeros):
//
//	version (1) = 0x02 | flags (1) | MaxSkip (4) | MaxSkippedKeys (4) | MaxSkippedSteps (4) |
//	MaxSkippedAge in seconds (4) | DHs private scalar (32) | DHr (65) | RK (32) | CKs (32) |
//	CKr (32) | Ns (4) | Nr (4) | PN (4) | HKs (32) | HKr (32) | NHKs (32) | NHKr (32) |
//	previous chain (65) | receiving DH steps (4) | skipped-key count (4) |
//	count × [chain (65) | N (4) | step (4) | stored at, Unix seconds (8) | message key (32)],
//	oldest first
//
// Version 1 (no expiry data) belongs to sessions of wire version 1, which are refused.
const (
	stateVersion       = 0x02
	legacyStateVersion = 0x01
)

// State flags: which optional keys are present.
const (
	flagHeaderEncryption = 1 << iota
	flagHasDHr
	flagHasCKs
	flagHasCKr
	flagHasHKs
	flagHasHKr
	flagHasPrev
	knownFlags = flagHasPrev<<1 - 1
)

const (
	stateFixedLen   = 1 + 1 + 4*4 + 32 + pubKeyLen + 3*keyLen + 3*4 + 4*keyLen + pubKeyLen + 4 + 4
	skippedEntryLen = pubKeyLen + 4 + 4 + 8 + keyLen
	// maxStateLen bounds the decoder before it allocates anything.
	maxStateLen = stateFixedLen + MaxConfigLimit*skippedEntryLen
)

// MarshalBinary encodes the whole State, secrets included: store the result encrypted.
func (s *State) MarshalBinary() ([]byte, error) {
	c := &s.c
	b := make([]byte, 0, stateFixedLen+len(s.skipped.keys)*skippedEntryLen)
	var flags byte
	for _, f := range []struct {
		set  bool
		flag byte
	}{
		{s.cfg.HeaderEncryption, flagHeaderEncryption}, {c.hasDHr, flagHasDHr}, {c.hasCKs, flagHasCKs},
		{c.hasCKr, flagHasCKr}, {c.hasHKs, flagHasHKs}, {c.hasHKr, flagHasHKr}, {c.hasPrev, flagHasPrev},
	} {
		if f.set {
			flags |= f.flag
		}
	}
	b = append(b, stateVersion, flags)
	b = binary.BigEndian.AppendUint32(b, uint32(s.cfg.MaxSkip))
	b = binary.BigEndian.AppendUint32(b, uint32(s.cfg.MaxSkippedKeys))
	b = binary.BigEndian.AppendUint32(b, uint32(s.cfg.MaxSkippedSteps))
	b = binary.BigEndian.AppendUint32(b, uint32(s.cfg.MaxSkippedAge/time.Second))
	b = append(b, c.dhs.Bytes()...)
	b = append(b, c.dhr[:]...)
	b = append(b, c.rk[:]...)
	b = append(b, c.cks[:]...)
	b = append(b, c.ckr[:]...)
	b = binary.BigEndian.AppendUint32(b, c.ns)
	b = binary.BigEndian.AppendUint32(b, c.nr)
	b = binary.BigEndian.AppendUint32(b, c.pn)
	b = append(b, c.hks[:]...)
	b = append(b, c.hkr[:]...)
	b = append(b, c.nhks[:]...)
	b = append(b, c.nhkr[:]...)
	b = append(b, c.prev[:]...)
	b = binary.BigEndian.AppendUint32(b, c.steps)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.skipped.keys)))
	for i := range s.skipped.keys {
		k := &s.skipped.keys[i]
		b = append(b, k.chain[:]...)
		b = binary.BigEndian.AppendUint32(b, k.n)
		b = binary.BigEndian.AppendUint32(b, k.step)
		b = binary.BigEndian.AppendUint64(b, uint64(k.stored))
		b = append(b, k.mk[:]...)
	}
	return b, nil
}

// stateReader consumes an encoding whose total length was checked up front.
type stateReader struct{ b []byte }

func (r *stateReader) next(n int) []byte {
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) uint32() uint32 { return binary.BigEndian.Uint32(r.next(4)) }

func (r *stateReader) uint64() uint64 { return binary.BigEndian.Uint64(r.next(8)) }

func (r *stateReader) key(dst *[keyLen]byte) { copy(dst[:], r.next(keyLen)) }

// Unmarshal decodes a State written by MarshalBinary. It checks lengths before allocating and
// validates every key, so any input yields a usable State or an error wrapping ErrMalformed or
// ErrUnsupportedVersion.
func Unmarshal(data []byte) (*State, error) {
	if len(data) < stateFixedLen {
		return nil, fmt.Errorf("state of %d bytes, want at least %d: %w", len(data), stateFixedLen, ErrMalformed)
	}
	switch data[0] {
	case stateVersion:
	case legacyStateVersion:
		return nil, fmt.Errorf("state version %#x predates random message nonces and skipped-key expiry (version 2); the session must be started again: %w", data[0], ErrUnsupportedVersion)
	default:
		return nil, fmt.Errorf("state version %#x: %w", data[0], ErrUnsupportedVersion)
	}
	if len(data) > maxStateLen {
		return nil, fmt.Errorf("state of %d bytes, want at most %d: %w", len(data), maxStateLen, ErrMalformed)
	}
	r := stateReader{b: data[1:]}
	flags := r.next(1)[0]
	if flags&^knownFlags != 0 {
		return nil, fmt.Errorf("state flags %#x: %w", flags, ErrMalformed)
	}
	he := flags&flagHeaderEncryption != 0
	if !he && flags&(flagHasHKs|flagHasHKr) != 0 {
		return nil, fmt.Errorf("header keys in a state without header encryption: %w", ErrMalformed)
	}
	maxSkip, maxSkipped, maxSteps, maxAge := r.uint32(), r.uint32(), r.uint32(), r.uint32()
	if maxSkip == 0 || maxSkipped == 0 || maxSteps == 0 || maxAge == 0 ||
		maxSkip > MaxConfigLimit || maxSkipped > MaxConfigLimit || maxSteps > MaxConfigLimit ||
		time.Duration(maxAge)*time.Second > MaxSkippedAgeLimit {
		return nil, fmt.Errorf("state limits %d, %d, %d, %ds: %w", maxSkip, maxSkipped, maxSteps, maxAge, ErrMalformed)
	}
	cfg, err := Config{HeaderEncryption: he, MaxSkip: int(maxSkip), MaxSkippedKeys: int(maxSkipped),
		MaxSkippedSteps: int(maxSteps), MaxSkippedAge: time.Duration(maxAge) * time.Second}.resolve()
	if err != nil {
		return nil, fmt.Errorf("state limits: %w", ErrMalformed)
	}
	s := newStateWithConfig(cfg, nil)
	c := &s.c
	if c.dhs, err = ecdh.P256().NewPrivateKey(r.next(32)); err != nil {
		return nil, fmt.Errorf("state ratchet key: %w", ErrMalformed)
	}
	copy(c.dhsPub[:], c.dhs.PublicKey().Bytes())
	copy(c.dhr[:], r.next(pubKeyLen))
	c.hasDHr = flags&flagHasDHr != 0
	if c.hasDHr {
		if _, err := ecdh.P256().NewPublicKey(c.dhr[:]); err != nil {
			return nil, fmt.Errorf("state remote ratchet key: %w", ErrMalformed)
		}
	}
	r.key(&c.rk)
	r.key(&c.cks)
	r.key(&c.ckr)
	c.hasCKs = flags&flagHasCKs != 0
	c.hasCKr = flags&flagHasCKr != 0
	c.ns, c.nr, c.pn = r.uint32(), r.uint32(), r.uint32()
	r.key(&c.hks)
	r.key(&c.hkr)
	r.key(&c.nhks)
	r.key(&c.nhkr)
	c.hasHKs = flags&flagHasHKs != 0
	c.hasHKr = flags&flagHasHKr != 0
	copy(c.prev[:], r.next(pubKeyLen))
	c.hasPrev = flags&flagHasPrev != 0
	c.steps = r.uint32()

	count := r.uint32()
	if count > maxSkipped {
		return nil, fmt.Errorf("state holds %d skipped keys, limit %d: %w", count, maxSkipped, ErrMalformed)
	}
	if want := int(count) * skippedEntryLen; len(r.b) != want {
		return nil, fmt.Errorf("state skipped keys take %d bytes, want %d: %w", len(r.b), want, ErrMalformed)
	}
	s.skipped.keys = make([]skippedKey, count)
	for i := range s.skipped.keys {
		k := &s.skipped.keys[i]
		copy(k.chain[:], r.next(pubKeyLen))
		k.n = r.uint32()
		k.step = r.uint32()
		k.stored = int64(r.uint64())
		r.key(&k.mk)
		if k.step > c.steps || (i > 0 && k.step < s.skipped.keys[i-1].step) {
			return nil, fmt.Errorf("state skipped key %d at step %d (state at step %d, previous key at a later step): %w", i, k.step, c.steps, ErrMalformed)
		}
	}
	return s, nil
}
