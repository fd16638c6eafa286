package config

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
)

// LoadOrCreateSecret reads a symmetric key of size bytes from path, creating it (random,
// owner-only, written atomically and synced) on first start. MAC keys must survive
// restarts: what they authenticated (capabilities handed to users) stays valid.
func LoadOrCreateSecret(path string, size int) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, size)
		rand.Read(key)
		if err := writeFileSynced(path, key); err != nil {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if len(key) != size {
		return nil, fmt.Errorf("key %s has %d bytes, want %d", path, len(key), size)
	}
	return key, nil
}
