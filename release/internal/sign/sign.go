// Package sign signs and verifies a release's artifacts with a cosign key
// pair (as `cosign generate-key-pair` writes it), offline: no Fulcio, no
// Rekor, nothing on the network.
//
// Three kinds of signed objects, all in formats cosign itself reads:
//   - image signatures: the "simple signing" payload naming an image digest
//     (github.com/sigstore/sigstore/pkg/signature/payload), signed as
//     `cosign sign --key` does;
//   - blob signatures (the bundle manifest), as `cosign sign-blob` does;
//   - DSSE envelopes over in-toto statements (SBOM and SLSA provenance
//     attestations), as `cosign attest --key` does.
//
// Signing is deterministic (ECDSA with RFC 6979 nonces, crypto/ecdsa's
// PrivateKey.Sign with a nil random source): the same key and the same
// release give the same signature bytes, so a whole bundle can be rebuilt
// and compared digest for digest.
package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// InTotoPayloadType is the DSSE payload type of in-toto statements.
const InTotoPayloadType = "application/vnd.in-toto+json"

// ErrWrongPassphrase is returned when the key does not decrypt.
var ErrWrongPassphrase = errors.New("wrong passphrase for the private key")

// Signer signs with an ECDSA P-256 cosign private key.
type Signer struct {
	priv *ecdsa.PrivateKey
}

// LoadPrivateKey decrypts a cosign private key (PEM "ENCRYPTED SIGSTORE
// PRIVATE KEY" or "ENCRYPTED COSIGN PRIVATE KEY") with pass.
func LoadPrivateKey(keyPEM, pass []byte) (*Signer, error) {
	p, _ := pem.Decode(keyPEM)
	if p == nil {
		return nil, errors.New("private key: not PEM")
	}
	if p.Type != cosign.CosignPrivateKeyPemType && p.Type != cosign.SigstorePrivateKeyPemType {
		return nil, fmt.Errorf("private key: PEM type %q is not a cosign private key", p.Type)
	}
	der, err := encrypted.Decrypt(p.Bytes, pass)
	if err != nil {
		return nil, fmt.Errorf("private key: %w (%v)", ErrWrongPassphrase, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key: %T keys are not supported (cosign generate-key-pair makes ECDSA P-256)", k)
	}
	return &Signer{priv: ek}, nil
}

// PublicKeyPEM returns the public key as cosign.pub holds it.
func (s *Signer) PublicKeyPEM() ([]byte, error) {
	return cryptoutils.MarshalPublicKeyToPEM(s.priv.Public())
}

// SignBlob returns the base64 ECDSA-SHA256 signature of msg, the format of
// `cosign sign-blob --key`.
func (s *Signer) SignBlob(msg []byte) (string, error) {
	sig, err := s.sign(msg)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

func (s *Signer) sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	// nil random source: RFC 6979 deterministic signature (see package doc).
	return s.priv.Sign(nil, d[:], crypto.SHA256)
}

// dsseSigner adapts Signer to sigstore's signature.Signer for the DSSE
// wrapper.
type dsseSigner struct{ s *Signer }

func (d dsseSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return d.s.priv.Public(), nil
}

func (d dsseSigner) SignMessage(r io.Reader, _ ...signature.SignOption) ([]byte, error) {
	msg, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return d.s.sign(msg)
}

// ImageSignature is a cosign image signature: the simple signing payload
// and its base64 signature.
type ImageSignature struct {
	Payload   []byte `json:"payload"`
	Signature string `json:"signature"`
}

// SignImage signs the image at ref (repository@digest), as `cosign sign
// --key` would.
func (s *Signer) SignImage(ref name.Digest) (ImageSignature, error) {
	p, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		return ImageSignature{}, err
	}
	sig, err := s.SignBlob(p)
	if err != nil {
		return ImageSignature{}, err
	}
	return ImageSignature{Payload: p, Signature: sig}, nil
}

// Attest wraps an in-toto statement in a signed DSSE envelope.
func (s *Signer) Attest(statement []byte) ([]byte, error) {
	return dsse.WrapSigner(dsseSigner{s}, InTotoPayloadType).SignMessage(bytes.NewReader(statement))
}

// Verifier checks signatures against a cosign public key.
type Verifier struct {
	v signature.Verifier
}

// LoadPublicKey parses cosign.pub.
func LoadPublicKey(pubPEM []byte) (*Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return &Verifier{v: v}, nil
}

// SignatureVerifier is the key as sigstore's verifier, for cosign's own
// verification functions.
func (v *Verifier) SignatureVerifier() signature.Verifier { return v.v }

// VerifyBlob checks a base64 signature over msg.
func (v *Verifier) VerifyBlob(msg []byte, sigB64 string) error {
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	if err := v.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
		return fmt.Errorf("signature does not verify with the public key: %w", err)
	}
	return nil
}

// VerifyImage checks an image signature and that its payload names the
// image digest want ("sha256:…").
func (v *Verifier) VerifyImage(is ImageSignature, want string) error {
	if err := v.VerifyBlob(is.Payload, is.Signature); err != nil {
		return err
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(is.Payload, &p); err != nil {
		return fmt.Errorf("signature payload: %w", err)
	}
	if p.Critical.Type != payload.CosignSignatureType {
		return fmt.Errorf("signature payload: type %q, want %q", p.Critical.Type, payload.CosignSignatureType)
	}
	if p.Critical.Image.DockerManifestDigest != want {
		return fmt.Errorf("signature is for image %s, not %s", p.Critical.Image.DockerManifestDigest, want)
	}
	return nil
}

// VerifyAttestation checks a DSSE envelope's signature and payload type and
// returns the statement it carries.
func (v *Verifier) VerifyAttestation(ctx context.Context, envelope []byte) ([]byte, error) {
	dv := dsse.WrapVerifier(v.v, dsse.WithExpectedPayloadType(InTotoPayloadType))
	if err := dv.VerifySignature(bytes.NewReader(envelope), nil); err != nil {
		return nil, fmt.Errorf("attestation does not verify with the public key: %w", err)
	}
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("attestation envelope: %w", err)
	}
	st, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("attestation payload: %w", err)
	}
	return st, nil
}
