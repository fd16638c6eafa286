package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/guardyn/guardyn/release/internal/sign"
)

// TestBuildRefusesBadKeys: a missing key file, a wrong passphrase and a
// missing passphrase are refused with a clear error (exit status 1) and
// nothing is written to --out.
func TestBuildRefusesBadKeys(t *testing.T) {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("right"), nil })
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "cosign.key")
	if err := os.WriteFile(key, kb.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "dist")
	cases := []struct {
		name, key, pass string
		want            string
	}{
		{"missing key", filepath.Join(dir, "nope.key"), "right", "no such file"},
		{"wrong passphrase", key, "wrong", "wrong passphrase for the private key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("COSIGN_PASSWORD", c.pass)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"build", "--version", "v0.3.0", "--key", c.key, "--out", out}, &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), c.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("--out was created: %v", err)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"build"}, {"verify", "--key", "k"}, {"build", "--version", "v1.0.0", "--key", "k", "--out", "o", "extra"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage)", args, code)
		}
	}
}

// TestKeygen: the key pair keygen writes loads through the same code as a
// cosign-made pair and signs what its public key verifies; keygen never
// overwrites a key.
func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGN_PASSWORD", "pw")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "--out", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr.String())
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "cosign.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("cosign.key mode %v, want 0600", fi.Mode().Perm())
	}
	signer, err := sign.LoadPrivateKey(keyPEM, []byte("pw"))
	if err != nil {
		t.Fatalf("load private key: %v", err)
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.LoadPublicKey(pubPEM)
	if err != nil {
		t.Fatalf("load public key: %v", err)
	}
	msg := []byte("manifest")
	sig, err := signer.SignBlob(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.VerifyBlob(msg, sig); err != nil {
		t.Fatalf("signature by the new key does not verify with its public key: %v", err)
	}

	stderr.Reset()
	if code := run(context.Background(), []string{"keygen", "--out", dir}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "already exists") {
		t.Fatalf("second keygen: exit %d, %q; want 1 and \"already exists\"", code, stderr.String())
	}
	after, _ := os.ReadFile(filepath.Join(dir, "cosign.key"))
	if !bytes.Equal(after, keyPEM) {
		t.Fatal("keygen overwrote the private key")
	}
}
