package vault_test

import (
	"path/filepath"
	"testing"

	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/client/vault/vaulttest"
)

// TestDir runs the Storage suite on profile directories, not yet created (Create makes them).
func TestDir(t *testing.T) {
	vaulttest.Run(t, func(tb testing.TB) vault.Storage {
		return vault.Dir(filepath.Join(tb.TempDir(), "profile"))
	})
}
