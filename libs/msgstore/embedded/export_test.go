package embedded

// IndexArenaBytes returns the bytes of the index arena's blocks handed out at least once
// in mapped chunks: an upper bound of the resident memory the index holds outside the
// Go heap.
func IndexArenaBytes(s *Store) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.arena.touched
}
