package keys

import (
	"cmp"
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"
)

// MaxStoredPreKeys bounds how many prekeys of one kind (signed, one-time EC, KEM) a store holds,
// which also bounds what [ParsePreKeyStore] allocates. Servers hand out at most a few hundred
// one-time keys per device between replenishments, so 65536 leaves ample room.
const MaxStoredPreKeys = 1 << 16

// PreKeyStore holds a device's private prekeys, finds them by id for the responder side of PQXDH,
// and forgets one-time prekeys once consumed. Ids come from two counters that only move forward,
// one for EC prekeys (signed and one-time share it, so an id names one EC key per device) and one
// for KEM prekeys. The store can thus tell an id it never issued ([ErrUnknownPreKey]) from a
// one-time id it already consumed ([ErrPreKeyUsed]) without remembering every consumed id.
//
// A PreKeyStore is not safe for concurrent use. Persist it (MarshalBinary) after every change:
// a one-time prekey must stay consumed across restarts.
type PreKeyStore struct {
	_       [0]func()
	signed  map[uint32]*SignedPreKey
	oneTime map[uint32]*OneTimePreKey
	kem     map[uint32]*KEMPreKey
	nextEC  uint32 // next id for signed and one-time EC prekeys
	nextKEM uint32
}

// NewPreKeyStore returns an empty store. Ids start at 1 so that 0 never names a real key.
func NewPreKeyStore() *PreKeyStore {
	return &PreKeyStore{
		signed:  map[uint32]*SignedPreKey{},
		oneTime: map[uint32]*OneTimePreKey{},
		kem:     map[uint32]*KEMPreKey{},
		nextEC:  1,
		nextKEM: 1,
	}
}

// takeIDs reserves n consecutive ids from *next, refusing to wrap around or overfill a kind.
func takeIDs(next *uint32, n, held int, kind string) (uint32, error) {
	if n < 0 || held+n > MaxStoredPreKeys {
		return 0, fmt.Errorf("%s prekeys: holding %d, asked for %d more, limit %d", kind, held, n, MaxStoredPreKeys)
	}
	if uint64(*next)+uint64(n) > 1<<32-1 {
		return 0, fmt.Errorf("%s prekeys: %w", kind, ErrIDsExhausted)
	}
	first := *next
	*next += uint32(n)
	return first, nil
}

// GenerateSignedPreKey generates and stores a new signed prekey created at now and returns its
// public form. Older signed prekeys stay until [PreKeyStore.RemoveSignedPreKey] or
// [PreKeyStore.PruneReplaced], so sessions started against them while the new one propagates
// still work.
func (s *PreKeyStore) GenerateSignedPreKey(owner *Identity, now time.Time) (*SignedPreKeyPublic, error) {
	id, err := takeIDs(&s.nextEC, 1, len(s.signed), "signed")
	if err != nil {
		return nil, err
	}
	k, err := GenerateSignedPreKey(owner, id, now)
	if err != nil {
		return nil, err
	}
	s.signed[id] = k
	return k.Public(), nil
}

// GenerateOneTimePreKeys generates and stores n one-time EC prekeys and returns their public forms.
func (s *PreKeyStore) GenerateOneTimePreKeys(n int) ([]*OneTimePreKeyPublic, error) {
	first, err := takeIDs(&s.nextEC, n, len(s.oneTime), "one-time")
	if err != nil {
		return nil, err
	}
	out := make([]*OneTimePreKeyPublic, 0, n)
	for i := range uint32(n) {
		k, err := GenerateOneTimePreKey(first + i)
		if err != nil {
			return nil, err
		}
		s.oneTime[k.id] = k
		out = append(out, k.Public())
	}
	return out, nil
}

// GenerateKEMPreKeys generates, signs and stores n one-time ML-KEM-768 prekeys created at now.
func (s *PreKeyStore) GenerateKEMPreKeys(owner *Identity, n int, now time.Time) ([]*KEMPreKeyPublic, error) {
	return s.generateKEM(owner, n, false, now)
}

// GenerateLastResortKEMPreKey generates, signs and stores a last-resort ML-KEM-768 prekey created
// at now, used by initiators when the server has no one-time KEM prekey left. It is never
// consumed; a newer one replaces it ([PreKeyStore.PruneReplaced]).
func (s *PreKeyStore) GenerateLastResortKEMPreKey(owner *Identity, now time.Time) (*KEMPreKeyPublic, error) {
	out, err := s.generateKEM(owner, 1, true, now)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func (s *PreKeyStore) generateKEM(owner *Identity, n int, lastResort bool, now time.Time) ([]*KEMPreKeyPublic, error) {
	first, err := takeIDs(&s.nextKEM, n, len(s.kem), "kem")
	if err != nil {
		return nil, err
	}
	out := make([]*KEMPreKeyPublic, 0, n)
	for i := range uint32(n) {
		k, err := GenerateKEMPreKey(owner, first+i, lastResort, now)
		if err != nil {
			return nil, err
		}
		s.kem[k.id] = k
		out = append(out, k.Public())
	}
	return out, nil
}

// admit checks that id may be added to a kind: not held already, not consumed before.
func admit[K any](held map[uint32]K, next *uint32, id uint32, kind string) error {
	if _, ok := held[id]; ok {
		return fmt.Errorf("%s prekey %d already stored", kind, id)
	}
	if id < *next {
		return fmt.Errorf("%s prekey %d: %w", kind, id, ErrPreKeyUsed)
	}
	if len(held) >= MaxStoredPreKeys {
		return fmt.Errorf("%s prekeys: limit %d reached", kind, MaxStoredPreKeys)
	}
	if id == 1<<32-1 {
		return fmt.Errorf("%s prekeys: %w", kind, ErrIDsExhausted)
	}
	*next = id + 1
	return nil
}

// AddSignedPreKey stores a signed prekey made elsewhere (for example from a seed in tests). Its id
// must be above every EC prekey id the store has issued.
func (s *PreKeyStore) AddSignedPreKey(k *SignedPreKey) error {
	if err := admit(s.signed, &s.nextEC, k.id, "signed"); err != nil {
		return err
	}
	s.signed[k.id] = k
	return nil
}

// AddOneTimePreKey stores a one-time prekey made elsewhere. Its id must be above every EC prekey id
// the store has issued, so a consumed key can never come back.
func (s *PreKeyStore) AddOneTimePreKey(k *OneTimePreKey) error {
	if err := admit(s.oneTime, &s.nextEC, k.id, "one-time"); err != nil {
		return err
	}
	s.oneTime[k.id] = k
	return nil
}

// AddKEMPreKey stores a KEM prekey made elsewhere, under the same rule as AddOneTimePreKey.
func (s *PreKeyStore) AddKEMPreKey(k *KEMPreKey) error {
	if err := admit(s.kem, &s.nextKEM, k.id, "kem"); err != nil {
		return err
	}
	s.kem[k.id] = k
	return nil
}

// lookup finds id, telling never-issued ids from issued-then-removed ones.
func lookup[K any](held map[uint32]*K, next, id uint32, kind string, gone error) (*K, error) {
	if k, ok := held[id]; ok {
		return k, nil
	}
	if id != 0 && id < next {
		return nil, fmt.Errorf("%s prekey %d: %w", kind, id, gone)
	}
	return nil, fmt.Errorf("%s prekey %d: %w", kind, id, ErrUnknownPreKey)
}

// SignedPreKey returns signed prekey id, or [ErrUnknownPreKey].
func (s *PreKeyStore) SignedPreKey(id uint32) (*SignedPreKey, error) {
	return lookup(s.signed, s.nextEC, id, "signed", ErrUnknownPreKey)
}

// OneTimePreKey returns one-time prekey id without consuming it, [ErrPreKeyUsed] if it was
// consumed, or [ErrUnknownPreKey] if it was never issued.
func (s *PreKeyStore) OneTimePreKey(id uint32) (*OneTimePreKey, error) {
	return lookup(s.oneTime, s.nextEC, id, "one-time", ErrPreKeyUsed)
}

// KEMPreKey returns KEM prekey id without consuming it, [ErrPreKeyUsed] if it was a consumed
// one-time key, or [ErrUnknownPreKey] if it was never issued.
func (s *PreKeyStore) KEMPreKey(id uint32) (*KEMPreKey, error) {
	return lookup(s.kem, s.nextKEM, id, "kem", ErrPreKeyUsed)
}

// ConsumeOneTimePreKey forgets one-time prekey id after a successful handshake; using it again
// fails with [ErrPreKeyUsed].
func (s *PreKeyStore) ConsumeOneTimePreKey(id uint32) error {
	if _, err := s.OneTimePreKey(id); err != nil {
		return err
	}
	// crypto/ecdh offers no way to wipe a scalar; dropping the last reference is what Go allows.
	delete(s.oneTime, id)
	return nil
}

// ConsumeKEMPreKey forgets KEM prekey id after a successful handshake if it is a one-time key.
// The last-resort key stays (it is replaced with RemoveKEMPreKey once a new one is uploaded).
func (s *PreKeyStore) ConsumeKEMPreKey(id uint32) error {
	k, err := s.KEMPreKey(id)
	if err != nil {
		return err
	}
	if !k.lastResort {
		delete(s.kem, id)
	}
	return nil
}

// RemoveSignedPreKey forgets a rotated-out signed prekey.
func (s *PreKeyStore) RemoveSignedPreKey(id uint32) error {
	if _, err := s.SignedPreKey(id); err != nil {
		return err
	}
	delete(s.signed, id)
	return nil
}

// RemoveKEMPreKey forgets any KEM prekey, including a replaced last-resort key.
func (s *PreKeyStore) RemoveKEMPreKey(id uint32) error {
	if _, err := s.KEMPreKey(id); err != nil {
		return err
	}
	delete(s.kem, id)
	return nil
}

// NewestSignedPreKey returns the most recently issued signed prekey (the one uploaded last),
// or nil if the store holds none.
func (s *PreKeyStore) NewestSignedPreKey() *SignedPreKey {
	var newest *SignedPreKey
	for _, k := range s.signed {
		if newest == nil || k.id > newest.id {
			newest = k
		}
	}
	return newest
}

// NewestLastResortKEMPreKey returns the most recently issued last-resort KEM prekey, or nil.
func (s *PreKeyStore) NewestLastResortKEMPreKey() *KEMPreKey {
	var newest *KEMPreKey
	for _, k := range s.kem {
		if k.lastResort && (newest == nil || k.id > newest.id) {
			newest = k
		}
	}
	return newest
}

// PruneReplaced forgets signed prekeys and last-resort KEM prekeys created before cutoff, except
// the newest of each kind (still in use), and reports how many it removed. Pass now minus
// [MaxPreKeyAge]: no initiator accepts a key older than that, so no handshake can still need it,
// and a device compromised later does not give away the sessions made with it.
func (s *PreKeyStore) PruneReplaced(cutoff time.Time) int {
	removed := 0
	if newest := s.NewestSignedPreKey(); newest != nil {
		for id, k := range s.signed {
			if k != newest && k.created.Before(cutoff) {
				delete(s.signed, id)
				removed++
			}
		}
	}
	if newest := s.NewestLastResortKEMPreKey(); newest != nil {
		for id, k := range s.kem {
			if k.lastResort && k != newest && k.created.Before(cutoff) {
				delete(s.kem, id)
				removed++
			}
		}
	}
	return removed
}

// Counts reports how many one-time EC and one-time KEM prekeys remain, so the client knows when
// to generate and upload more.
func (s *PreKeyStore) Counts() (oneTime, kemOneTime int) {
	for _, k := range s.kem {
		if !k.lastResort {
			kemOneTime++
		}
	}
	return len(s.oneTime), kemOneTime
}

// sortedIDs returns the ids of m in ascending order, for a deterministic encoding.
func sortedIDs[K any](m map[uint32]K) []uint32 {
	return slices.SortedFunc(maps.Keys(m), cmp.Compare[uint32])
}

// Minimum encoded entry sizes, used to bound counts before allocating (version 1 entries are
// 8 bytes shorter, without the creation time).
const (
	minSignedEntry = 4 + PrivateKeySize + 1 + 1
	oneTimeEntry   = 4 + PrivateKeySize
	minKEMEntry    = 4 + 1 + KEMSeedSize + 1 + 1
)

// Store encoding versions: 2 adds the signed creation times of signed and KEM prekeys. Version 1
// is still read, for profiles saved before: its keys get the zero creation time, which makes the
// client rotate them at once (they can no longer be re-signed with a time nobody knows).
const (
	storeVersion       = 2
	legacyStoreVersion = 1
)

// MarshalBinary encodes the store for local storage (version 2; creation times are Unix
// seconds). The result holds secrets.
//
//	u8 version | u32 next ec id | u32 next kem id
//	| u32 n | n × (u32 id | u64 created | scalar (32) | u8 sig len | sig)                   signed prekeys
//	| u32 n | n × (u32 id | scalar (32))                                                     one-time prekeys
//	| u32 n | n × (u32 id | u8 last resort | u64 created | seed (64) | u8 sig len | sig)     kem prekeys
//
// Entries of each kind are in ascending id order, the only order ParsePreKeyStore accepts.
func (s *PreKeyStore) MarshalBinary() ([]byte, error) {
	out := []byte{storeVersion}
	out = binary.BigEndian.AppendUint32(out, s.nextEC)
	out = binary.BigEndian.AppendUint32(out, s.nextKEM)
	out = binary.BigEndian.AppendUint32(out, uint32(len(s.signed)))
	for _, id := range sortedIDs(s.signed) {
		k := s.signed[id]
		out = binary.BigEndian.AppendUint32(out, id)
		out = appendCreated(out, k.created)
		out = append(out, k.private.Bytes()...)
		out = appendSignature(out, k.signature)
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(s.oneTime)))
	for _, id := range sortedIDs(s.oneTime) {
		out = binary.BigEndian.AppendUint32(out, id)
		out = append(out, s.oneTime[id].private.Bytes()...)
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(s.kem)))
	for _, id := range sortedIDs(s.kem) {
		k := s.kem[id]
		out = binary.BigEndian.AppendUint32(out, id)
		out = appendBool(out, k.lastResort)
		out = appendCreated(out, k.created)
		out = append(out, k.private.Bytes()...)
		out = appendSignature(out, k.signature)
	}
	return out, nil
}

// count reads an entry count and bounds it by MaxStoredPreKeys and by the bytes left, so a forged
// count cannot make the decoder allocate.
func (r *reader) count(minEntry int, what string) int {
	n := r.u32(what + " count")
	if r.err != nil {
		return 0
	}
	if n > MaxStoredPreKeys || int(n) > len(r.b)/minEntry {
		r.err = fmt.Errorf("%s count %d too large for %d bytes: %w", what, n, len(r.b), ErrMalformed)
		return 0
	}
	return int(n)
}

// checkID rejects ids at or above the kind's next-id counter and ids not above the previous
// entry's (prev, 0 for the first): MarshalBinary writes each kind in ascending id order, and
// accepting only that order gives every store exactly one encoding (and rules out duplicates).
func checkID(next, prev, id uint32, what string) error {
	if id == 0 || id >= next {
		return fmt.Errorf("%s id %d outside 1..%d: %w", what, id, next-1, ErrMalformed)
	}
	if id <= prev {
		return fmt.Errorf("%s id %d after id %d, want ascending ids: %w", what, id, prev, ErrMalformed)
	}
	return nil
}

// ParsePreKeyStore decodes the output of [PreKeyStore.MarshalBinary], or a version 1 store
// (whose signed and KEM prekeys get the zero creation time).
func ParsePreKeyStore(data []byte) (*PreKeyStore, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("prekey store: empty input: %w", ErrMalformed)
	}
	if data[0] != storeVersion && data[0] != legacyStoreVersion {
		return nil, fmt.Errorf("prekey store version %d: %w", data[0], ErrUnsupportedVersion)
	}
	// created reads an entry's creation time (version 2), or gives the zero time (version 1).
	created := func(r *reader, what string) time.Time {
		if data[0] == legacyStoreVersion {
			return time.Time{}
		}
		return r.created(what)
	}
	r := &reader{b: data[1:]}
	s := NewPreKeyStore()
	s.nextEC = r.u32("next ec id")
	s.nextKEM = r.u32("next kem id")

	n := r.count(minSignedEntry, "signed prekey")
	var prev uint32
	for range n {
		id := r.u32("signed prekey id")
		at := created(r, "signed prekey")
		scalar := r.bytes(PrivateKeySize, "signed prekey")
		sig := r.signature("signed prekey")
		if r.err != nil {
			break
		}
		if err := checkID(s.nextEC, prev, id, "signed prekey"); err != nil {
			return nil, err
		}
		prev = id
		priv, err := ecdh.P256().NewPrivateKey(scalar)
		if err != nil {
			return nil, fmt.Errorf("signed prekey %d: %w: %v", id, ErrMalformed, err)
		}
		s.signed[id] = &SignedPreKey{id: id, created: at, private: priv, signature: append([]byte(nil), sig...)}
	}

	n = r.count(oneTimeEntry, "one-time prekey")
	prev = 0
	for range n {
		id := r.u32("one-time prekey id")
		scalar := r.bytes(PrivateKeySize, "one-time prekey")
		if r.err != nil {
			break
		}
		if err := checkID(s.nextEC, prev, id, "one-time prekey"); err != nil {
			return nil, err
		}
		prev = id
		if _, clash := s.signed[id]; clash {
			return nil, fmt.Errorf("one-time prekey id %d is also a signed prekey id: %w", id, ErrMalformed)
		}
		priv, err := ecdh.P256().NewPrivateKey(scalar)
		if err != nil {
			return nil, fmt.Errorf("one-time prekey %d: %w: %v", id, ErrMalformed, err)
		}
		s.oneTime[id] = &OneTimePreKey{id: id, private: priv}
	}

	n = r.count(minKEMEntry, "kem prekey")
	prev = 0
	for range n {
		id := r.u32("kem prekey id")
		lastResort := r.bool("kem prekey last resort")
		at := created(r, "kem prekey")
		seed := r.bytes(KEMSeedSize, "kem prekey")
		sig := r.signature("kem prekey")
		if r.err != nil {
			break
		}
		if err := checkID(s.nextKEM, prev, id, "kem prekey"); err != nil {
			return nil, err
		}
		prev = id
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			return nil, fmt.Errorf("kem prekey %d: %w: %v", id, ErrMalformed, err)
		}
		s.kem[id] = &KEMPreKey{id: id, created: at, private: dk, lastResort: lastResort, signature: append([]byte(nil), sig...)}
	}
	if err := r.done("prekey store"); err != nil {
		return nil, fmt.Errorf("prekey store: %w", err)
	}
	return s, nil
}
