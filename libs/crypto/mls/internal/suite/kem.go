package suite

import (
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha512"
	"fmt"

	circlhpke "github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"
)

// kem is the HPKE half of a suite: KEM, KDF and AEAD together.
type kem interface {
	setAEAD(id uint16) error
	deriveKeyPair(ikm []byte) (priv, pub []byte, err error)
	public(priv []byte) ([]byte, error)
	seal(pub, info, plaintext []byte) (enc, ct []byte, err error)
	open(priv, enc, info, ct []byte) ([]byte, error)
	exportSender(pub []byte, exporterContext string, length int) (enc, secret []byte, err error)
	exportReceiver(priv, enc []byte, exporterContext string, length int) ([]byte, error)
}

// stdKEM is HPKE from the standard library (X25519 and the NIST curves).
type stdKEM struct {
	nsk  int // private key size, for left-padding short encodings
	kem  hpke.KEM
	kdf  hpke.KDF
	aead hpke.AEAD
}

func newStdKEM(k hpke.KEM, kdf hpke.KDF, nsk int) (*stdKEM, error) {
	return &stdKEM{kem: k, kdf: kdf, nsk: nsk}, nil
}

func (k *stdKEM) setAEAD(id uint16) error {
	a, err := hpke.NewAEAD(id)
	if err != nil {
		return fmt.Errorf("hpke aead %d: %w", id, err)
	}
	k.aead = a
	return nil
}

func (k *stdKEM) deriveKeyPair(ikm []byte) (priv, pub []byte, err error) {
	sk, err := k.kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke derive key pair: %w", err)
	}
	priv, err = sk.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("hpke private key: %w", err)
	}
	return priv, sk.PublicKey().Bytes(), nil
}

func (k *stdKEM) private(priv []byte) (hpke.PrivateKey, error) {
	// Some implementations serialize NIST scalars without leading zero
	// bytes; the standard library wants the full width.
	if len(priv) < k.nsk && len(priv) > 0 {
		priv = append(make([]byte, k.nsk-len(priv)), priv...)
	}
	sk, err := k.kem.NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke private key: %v", ErrBadKey, err)
	}
	return sk, nil
}

func (k *stdKEM) publicKey(pub []byte) (hpke.PublicKey, error) {
	pk, err := k.kem.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke public key: %v", ErrBadKey, err)
	}
	return pk, nil
}

func (k *stdKEM) public(priv []byte) ([]byte, error) {
	sk, err := k.private(priv)
	if err != nil {
		return nil, err
	}
	return sk.PublicKey().Bytes(), nil
}

func (k *stdKEM) seal(pub, info, plaintext []byte) (enc, ct []byte, err error) {
	pk, err := k.publicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	enc, s, err := hpke.NewSender(pk, k.kdf, k.aead, info)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	ct, err = s.Seal(nil, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke seal: %w", err)
	}
	return enc, ct, nil
}

func (k *stdKEM) open(priv, enc, info, ct []byte) ([]byte, error) {
	sk, err := k.private(priv)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(enc, sk, k.kdf, k.aead, info)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke decapsulation: %v", ErrDecrypt, err)
	}
	pt, err := r.Open(nil, ct)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke open", ErrDecrypt)
	}
	return pt, nil
}

func (k *stdKEM) exportSender(pub []byte, exporterContext string, length int) (enc, secret []byte, err error) {
	pk, err := k.publicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	enc, s, err := hpke.NewSender(pk, k.kdf, k.aead, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	secret, err = s.Export(exporterContext, length)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke export: %w", err)
	}
	return enc, secret, nil
}

func (k *stdKEM) exportReceiver(priv, enc []byte, exporterContext string, length int) ([]byte, error) {
	sk, err := k.private(priv)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(enc, sk, k.kdf, k.aead, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke decapsulation: %v", ErrDecrypt, err)
	}
	secret, err := r.Export(exporterContext, length)
	if err != nil {
		return nil, fmt.Errorf("hpke export: %w", err)
	}
	return secret, nil
}

// x448KEM is DHKEM(X448, HKDF-SHA512) from circl, which the standard library
// lacks.
type x448KEM struct {
	suite circlhpke.Suite
}

// x448Nsk is Nsk of DHKEM(X448): the private key size.
const x448Nsk = 56

var x448Scheme = circlhpke.KEM_X448_HKDF_SHA512.Scheme()

func (x *x448KEM) setAEAD(id uint16) error {
	a := circlhpke.AEAD(id)
	if !a.IsValid() {
		return fmt.Errorf("hpke aead %d: unsupported", id)
	}
	x.suite = circlhpke.NewSuite(circlhpke.KEM_X448_HKDF_SHA512, circlhpke.KDF_HKDF_SHA512, a)
	return nil
}

// deriveKeyPair follows RFC 9180, Section 7.1.3 for X448. circl's own
// DeriveKeyPair accepts only 56-byte seeds, while MLS derives from Nh = 64
// bytes, so the two labeled HKDF steps are spelled out here.
func (x *x448KEM) deriveKeyPair(ikm []byte) (priv, pub []byte, err error) {
	suiteID := []byte{'K', 'E', 'M', 0x00, 0x21}
	labeledIKM := append(append(append([]byte("HPKE-v1"), suiteID...), "dkp_prk"...), ikm...)
	prk, err := hkdf.Extract(sha512.New, labeledIKM, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("x448 derive key pair: %w", err)
	}
	info := append(append([]byte{0, x448Nsk}, "HPKE-v1"...), suiteID...)
	info = append(info, "sk"...)
	sk, err := hkdf.Expand(sha512.New, prk, string(info), x448Nsk)
	if err != nil {
		return nil, nil, fmt.Errorf("x448 derive key pair: %w", err)
	}
	pub, err = x.public(sk)
	if err != nil {
		return nil, nil, err
	}
	return sk, pub, nil
}

func (*x448KEM) private(priv []byte) (circlkem.PrivateKey, error) {
	sk, err := x448Scheme.UnmarshalBinaryPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: x448 private key: %v", ErrBadKey, err)
	}
	return sk, nil
}

func (*x448KEM) publicKey(pub []byte) (circlkem.PublicKey, error) {
	pk, err := x448Scheme.UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: x448 public key: %v", ErrBadKey, err)
	}
	return pk, nil
}

func (x *x448KEM) public(priv []byte) ([]byte, error) {
	sk, err := x.private(priv)
	if err != nil {
		return nil, err
	}
	return sk.Public().MarshalBinary()
}

func (x *x448KEM) seal(pub, info, plaintext []byte) (enc, ct []byte, err error) {
	pk, err := x.publicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	snd, err := x.suite.NewSender(pk, info)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	enc, sealer, err := snd.Setup(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	ct, err = sealer.Seal(plaintext, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke seal: %w", err)
	}
	return enc, ct, nil
}

func (x *x448KEM) receiver(priv, enc, info []byte) (circlhpke.Opener, error) {
	sk, err := x.private(priv)
	if err != nil {
		return nil, err
	}
	rcv, err := x.suite.NewReceiver(sk, info)
	if err != nil {
		return nil, fmt.Errorf("hpke setup: %w", err)
	}
	o, err := rcv.Setup(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke decapsulation: %v", ErrDecrypt, err)
	}
	return o, nil
}

func (x *x448KEM) open(priv, enc, info, ct []byte) ([]byte, error) {
	o, err := x.receiver(priv, enc, info)
	if err != nil {
		return nil, err
	}
	pt, err := o.Open(ct, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke open", ErrDecrypt)
	}
	return pt, nil
}

func (x *x448KEM) exportSender(pub []byte, exporterContext string, length int) (enc, secret []byte, err error) {
	pk, err := x.publicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	snd, err := x.suite.NewSender(pk, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	enc, sealer, err := snd.Setup(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	return enc, sealer.Export([]byte(exporterContext), uint(length)), nil
}

func (x *x448KEM) exportReceiver(priv, enc []byte, exporterContext string, length int) ([]byte, error) {
	o, err := x.receiver(priv, enc, nil)
	if err != nil {
		return nil, err
	}
	return o.Export([]byte(exporterContext), uint(length)), nil
}
