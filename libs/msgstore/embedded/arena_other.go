//go:build !linux

package embedded

// mapMemory allocates n bytes for the index arena on the Go heap: elsewhere than Linux
// the index keeps the heap's costs (docs/storage.md).
func mapMemory(n int) ([]byte, error) {
	return make([]byte, n), nil
}

// unmapMemory drops memory from mapMemory; the garbage collector frees it.
func unmapMemory([]byte) error {
	return nil
}

// discardMemory does nothing: memory on the heap cannot be given back in part, and
// the arena hands blocks out empty.
func discardMemory([]byte) error {
	return nil
}
