package sign

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"
)

// keyPair makes a key pair exactly as `cosign generate-key-pair` does.
func keyPair(t *testing.T, pass string) (*Signer, *Verifier, *cosign.KeysBytes) {
	t.Helper()
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte(pass), nil })
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadPrivateKey(kb.PrivateBytes, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadPublicKey(kb.PublicBytes)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, kb
}

func TestWrongPassphrase(t *testing.T) {
	_, _, kb := keyPair(t, "right")
	_, err := LoadPrivateKey(kb.PrivateBytes, []byte("wrong"))
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: got %v, want ErrWrongPassphrase", err)
	}
	if _, err := LoadPrivateKey(kb.PublicBytes, []byte("right")); err == nil || !strings.Contains(err.Error(), "not a cosign private key") {
		t.Fatalf("public key as private key: got %v", err)
	}
	if _, err := LoadPrivateKey([]byte("junk"), nil); err == nil {
		t.Fatal("junk key accepted")
	}
}

// TestSignaturesAreDeterministic: the same key signs the same bytes the
// same way (RFC 6979), which makes a rebuilt bundle identical.
func TestSignaturesAreDeterministic(t *testing.T) {
	s, v, _ := keyPair(t, "")
	a, err := s.SignBlob([]byte("manifest"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.SignBlob([]byte("manifest"))
	if a != b {
		t.Fatal("two signatures of the same message differ")
	}
	if err := v.VerifyBlob([]byte("manifest"), a); err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyBlob([]byte("manifesT"), a); err == nil {
		t.Fatal("signature verified over other bytes")
	}
}

func TestImageSignature(t *testing.T) {
	s, v, _ := keyPair(t, "pw")
	_, other, _ := keyPair(t, "pw")
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	ref, err := name.NewDigest("ghcr.io/guardyn/auth@" + d)
	if err != nil {
		t.Fatal(err)
	}
	is, err := s.SignImage(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyImage(is, d); err != nil {
		t.Fatalf("own signature: %v", err)
	}
	if err := other.VerifyImage(is, d); err == nil {
		t.Fatal("a signature by another key verified")
	}
	const d2 = "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if err := v.VerifyImage(is, d2); err == nil || !strings.Contains(err.Error(), "not "+d2) {
		t.Fatalf("signature for another digest: got %v", err)
	}
}

func TestAttestation(t *testing.T) {
	s, v, _ := keyPair(t, "")
	_, other, _ := keyPair(t, "")
	st := []byte(`{"_type":"https://in-toto.io/Statement/v1"}`)
	env, err := s.Attest(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.VerifyAttestation(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(st) {
		t.Fatalf("payload %q, want %q", got, st)
	}
	if _, err := other.VerifyAttestation(context.Background(), env); err == nil {
		t.Fatal("attestation verified with another key")
	}
	tampered := strings.Replace(string(env), `"payload":"`, `"payload":"e30K`, 1)
	if _, err := v.VerifyAttestation(context.Background(), []byte(tampered)); err == nil {
		t.Fatal("tampered attestation verified")
	}
}
