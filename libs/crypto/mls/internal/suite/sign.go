package suite

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"
)

// signer is the signature scheme of a suite over serialized keys: EdDSA
// seeds and public keys, or ECDSA scalars and uncompressed points.
type signer interface {
	sign(priv, msg []byte) ([]byte, error)
	verify(pub, msg, sig []byte) error
	public(priv []byte) ([]byte, error)
	generate() (priv, pub []byte, err error)
}

type ed25519Signer struct{}

func (ed25519Signer) key(priv []byte) (ed25519.PrivateKey, error) {
	if len(priv) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: ed25519 seed of %d bytes", ErrBadKey, len(priv))
	}
	return ed25519.NewKeyFromSeed(priv), nil
}

func (e ed25519Signer) sign(priv, msg []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(k, msg), nil
}

func (ed25519Signer) verify(pub, msg, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: ed25519 public key of %d bytes", ErrBadKey, len(pub))
	}
	if !ed25519.Verify(pub, msg, sig) {
		return ErrBadSignature
	}
	return nil
}

func (e ed25519Signer) public(priv []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return []byte(k.Public().(ed25519.PublicKey)), nil
}

func (ed25519Signer) generate() (priv, pub []byte, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return sk.Seed(), pk, nil
}

type ed448Signer struct{}

func (ed448Signer) key(priv []byte) (ed448.PrivateKey, error) {
	if len(priv) != ed448.SeedSize {
		return nil, fmt.Errorf("%w: ed448 seed of %d bytes", ErrBadKey, len(priv))
	}
	return ed448.NewKeyFromSeed(priv), nil
}

func (e ed448Signer) sign(priv, msg []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return ed448.Sign(k, msg, ""), nil
}

func (ed448Signer) verify(pub, msg, sig []byte) error {
	if len(pub) != ed448.PublicKeySize {
		return fmt.Errorf("%w: ed448 public key of %d bytes", ErrBadKey, len(pub))
	}
	if !ed448.Verify(ed448.PublicKey(pub), msg, sig, "") {
		return ErrBadSignature
	}
	return nil
}

func (e ed448Signer) public(priv []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return []byte(k.Public().(ed448.PublicKey)), nil
}

func (ed448Signer) generate() (priv, pub []byte, err error) {
	pk, sk, err := ed448.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return sk.Seed(), pk, nil
}

// ecdsaSigner is ECDSA with DER signatures, as TLS 1.3 and MLS use it.
type ecdsaSigner struct {
	curve elliptic.Curve
	hash  crypto.Hash
}

func newECDSASigner(bits int) ecdsaSigner {
	switch bits {
	case 256:
		return ecdsaSigner{elliptic.P256(), crypto.SHA256}
	case 384:
		return ecdsaSigner{elliptic.P384(), crypto.SHA384}
	default:
		return ecdsaSigner{elliptic.P521(), crypto.SHA512}
	}
}

func (e ecdsaSigner) digest(msg []byte) []byte {
	switch e.hash {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	default:
		d := sha512.Sum512(msg)
		return d[:]
	}
}

func (e ecdsaSigner) key(priv []byte) (*ecdsa.PrivateKey, error) {
	// Some implementations serialize the scalar without leading zero bytes;
	// the standard library wants the full field width.
	if size := (e.curve.Params().BitSize + 7) / 8; len(priv) < size {
		priv = append(make([]byte, size-len(priv)), priv...)
	}
	k, err := ecdsa.ParseRawPrivateKey(e.curve, priv)
	if err != nil {
		return nil, fmt.Errorf("%w: ecdsa private key: %v", ErrBadKey, err)
	}
	return k, nil
}

func (e ecdsaSigner) sign(priv, msg []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return ecdsa.SignASN1(rand.Reader, k, e.digest(msg))
}

func (e ecdsaSigner) verify(pub, msg, sig []byte) error {
	k, err := ecdsa.ParseUncompressedPublicKey(e.curve, pub)
	if err != nil {
		return fmt.Errorf("%w: ecdsa public key: %v", ErrBadKey, err)
	}
	if !ecdsa.VerifyASN1(k, e.digest(msg), sig) {
		return ErrBadSignature
	}
	return nil
}

func (e ecdsaSigner) public(priv []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return k.PublicKey.Bytes()
}

func (e ecdsaSigner) generate() (priv, pub []byte, err error) {
	k, err := ecdsa.GenerateKey(e.curve, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	priv, err = k.Bytes()
	if err != nil {
		return nil, nil, err
	}
	pub, err = k.PublicKey.Bytes()
	return priv, pub, err
}
