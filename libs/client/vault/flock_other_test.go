//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package vault

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirRefusesWithoutFlock: where there is no flock (js/wasm, which tools/repocheck
// TestClientLibraryRunsAsWebAssembly runs this test on), a profile directory is refused with
// an error that says why and what to use instead, rather than shared without a lock.
func TestDirRefusesWithoutFlock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "profile")
	_, err := Create(Dir(dir), pass, testParams, []byte("state"))
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no file locks") || !strings.Contains(err.Error(), "vault.Storage") {
		t.Fatalf("Create in a directory without flock: %v", err)
	}
	if _, err := Dir(dir).LockReceiver(); err == nil || !strings.Contains(err.Error(), "no file locks") {
		t.Fatalf("LockReceiver without flock: %v", err)
	}
}
