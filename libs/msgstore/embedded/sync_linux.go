package embedded

import (
	"os"
	"syscall"
)

// datasync makes the written bytes of f durable. Segments are preallocated, so there is
// no metadata to flush and fdatasync is enough.
func datasync(f *os.File) error {
	return syscall.Fdatasync(int(f.Fd()))
}
