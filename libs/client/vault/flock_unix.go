//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package vault

import (
	"errors"
	"os"
	"syscall"
)

// flockFile takes an exclusive flock on f, waiting for it when wait is set; without wait it
// reports false when another open file holds it.
func flockFile(f *os.File, wait bool) (bool, error) {
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		if !wait && errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func funlockFile(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
