package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateEd25519Key(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "token.key")
	first, err := LoadOrCreateEd25519Key(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", info.Mode().Perm())
	}
	again, err := LoadOrCreateEd25519Key(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Fatal("the key changed across loads")
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateEd25519Key(path); err == nil {
		t.Fatal("a truncated key file was accepted")
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "mac.key")
	a, err := LoadOrCreateSecret(path, 32)
	if err != nil || len(a) != 32 {
		t.Fatalf("create: %d bytes, %v", len(a), err)
	}
	b, err := LoadOrCreateSecret(path, 32)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("reload gave another key (%v)", err)
	}
	if _, err := LoadOrCreateSecret(path, 16); err == nil {
		t.Fatal("a key of the wrong size was accepted")
	}
}
