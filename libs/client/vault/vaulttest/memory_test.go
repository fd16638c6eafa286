package vaulttest

import (
	"testing"

	"github.com/guardyn/guardyn/libs/client/vault"
)

func TestMemory(t *testing.T) {
	Run(t, func(testing.TB) vault.Storage { return NewMemory() })
}
