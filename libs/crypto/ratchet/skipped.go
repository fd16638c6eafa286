package ratchet

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
	mk    [keyLen]byte
}

// skippedStore holds message keys of messages not yet received, oldest first. Lookups are linear:
// the store is bounded (Config.MaxSkippedKeys) and only out-of-order messages consult it.
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
	if over := len(s.keys) - limit; over > 0 {
		clear(s.keys[:over])
		s.keys = append(s.keys[:0], s.keys[over:]...)
		clear(s.keys[len(s.keys) : len(s.keys)+over])
	}
}
