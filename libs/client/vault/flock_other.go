//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package vault

import (
	"fmt"
	"os"
	"runtime"
)

// flockFile fails: this system has no flock, and a profile that two processes might share
// without a lock would lose updates. Apps here keep their profile in another Storage.
func flockFile(*os.File, bool) (bool, error) {
	return false, fmt.Errorf("no file locks on %s/%s: keep the profile in another vault.Storage", runtime.GOOS, runtime.GOARCH)
}

func funlockFile(*os.File) {}
