//go:build !linux

package embedded

import "os"

// datasync makes the written bytes of f durable.
func datasync(f *os.File) error {
	return f.Sync()
}
