package ratchet

import "time"

// chainID names a receiving chain in the skipped-key store: the sender's ratchet public key
// without header encryption, the chain's 32-byte header key (zero padded) with it, as Signal's
// MKSKIPPED is indexed by (DHr, n) or (HKr, n).
type chainID [pubKeyLen]byte

func headerKeyChain(hk *[keyLen]byte) chainID {
	var id chainID
	copy(id[:], hk[:])
	return id
}

type skippedKey struct {
	chain chainID
	n     uint32
	// step is the receiving DH step count (core.steps) and stored the Unix time in seconds when
	// the key was stored, for expiry by Config.MaxSkippedSteps and Config.MaxSkippedAge.
	step   uint32
	stored int64
	mk     [keyLen]byte
}

// skippedStore holds message keys of messages not yet received, oldest first, so their steps
// (and, while the clock does not go back, their times) never decrease along the slice. Lookups
// are linear: the store is bounded (Config.MaxSkippedKeys) and only out-of-order messages
// consult it.
type skippedStore struct {
	keys []skippedKey
}

// find returns the position of (chain, n), or -1.
func (s *skippedStore) find(chain *chainID, n uint32) int {
	for i := range s.keys {
		if s.keys[i].n == n && s.keys[i].chain == *chain {
			return i
		}
	}
	return -1
}

// chains returns the distinct chains in the store, oldest first, leaving out skip.
func (s *skippedStore) chains(skip *chainID) []chainID {
	var ids []chainID
	for i := range s.keys {
		c := &s.keys[i].chain
		if skip != nil && *c == *skip {
			continue
		}
		seen := false
		for j := range ids {
			if ids[j] == *c {
				seen = true
				break
			}
		}
		if !seen {
			ids = append(ids, *c)
		}
	}
	return ids
}

// remove deletes entry i and wipes its key.
func (s *skippedStore) remove(i int) {
	clear(s.keys[i].mk[:])
	s.keys = append(s.keys[:i], s.keys[i+1:]...)
	clear(s.keys[len(s.keys) : len(s.keys)+1])
}

// add appends keys in order and then evicts the oldest entries beyond limit, wiping them.
func (s *skippedStore) add(keys []skippedKey, limit int) {
	s.keys = append(s.keys, keys...)
	s.evictOldest(len(s.keys) - limit)
}

// evictOldest deletes and wipes the n oldest entries (none if n <= 0).
func (s *skippedStore) evictOldest(n int) {
	if n <= 0 {
		return
	}
	clear(s.keys[:n])
	s.keys = append(s.keys[:0], s.keys[n:]...)
	clear(s.keys[len(s.keys) : len(s.keys)+n])
}

// expired reports whether k has outlived cfg's MaxSkippedSteps (steps is the current receiving
// DH step count) or MaxSkippedAge (now in Unix seconds).
func (k *skippedKey) expired(cfg *Config, steps uint32, now int64) bool {
	return steps-k.step > uint32(cfg.MaxSkippedSteps) || k.stored <= now-int64(cfg.MaxSkippedAge/time.Second)
}

// expireSkipped deletes the skipped keys that have expired, as the Double Ratchet specification
// advises (after some DH steps or some time): a key kept forever would let whoever later reads
// the state decrypt a message the peer sent long ago. The store is oldest first, so this stops
// at the first live key; a key left behind because the clock went back is still refused by
// decryptSkipped.
func (s *State) expireSkipped() {
	keys := s.skipped.keys
	if len(keys) == 0 {
		return
	}
	now := s.now().Unix()
	n := 0
	for n < len(keys) && keys[n].expired(&s.cfg, s.c.steps, now) {
		n++
	}
	s.skipped.evictOldest(n)
}
