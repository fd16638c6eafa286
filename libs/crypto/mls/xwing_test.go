package mls_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/sha256"
	"crypto/sha3"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	circlhpke "github.com/cloudflare/circl/hpke"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
)

// writeXWing regenerates testdata/xwing/crypto-basics-0x004d.json from this
// package's implementation. The file is frozen: regenerate it only when the
// suite's definition changes on purpose, and check the result against
// TestXWingIndependentDerivation, which does not use the package's HPKE.
var writeXWing = flag.Bool("xwing.write", false, "rewrite the frozen X-Wing vector")

const xwingVectorFile = "xwing/crypto-basics-0x004d.json"

// xwingInputs are the fixed inputs of the frozen vector: each is a
// SHA-256 of a label, so anyone can recompute them.
func xwingInput(label string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(label + string(rune('0'+i))))
		out = append(out, h[:]...)
	}
	return out[:n]
}

// writeXWingVector writes the frozen vector (with -xwing.write).
func writeXWingVector(t *testing.T) {
	s := mustSuite(t, uint16(suite.XWingChaCha20Poly1305SHA256Ed25519))
	h := hex.EncodeToString
	sigPriv := xwingInput("sign priv", 32)
	sigPub, err := s.SignaturePublicKey(sigPriv)
	if err != nil {
		t.Fatal(err)
	}
	content := xwingInput("sign content", 40)
	sig, err := s.SignWithLabel(sigPriv, "SignWithLabel", content)
	if err != nil {
		t.Fatal(err)
	}
	hpkePriv, hpkePub, err := s.DeriveKeyPair(xwingInput("hpke ikm", 32))
	if err != nil {
		t.Fatal(err)
	}
	ctx, pt := xwingInput("encrypt context", 24), xwingInput("encrypt plaintext", 48)
	kem, ct, err := s.EncryptWithLabel(hpkePub, "EncryptWithLabel", ctx, pt)
	if err != nil {
		t.Fatal(err)
	}
	secret := xwingInput("secret", 32)
	v := []map[string]any{{
		"cipher_suite": uint16(s.ID()),
		"ref_hash":     map[string]any{"label": "RefHash", "value": h(xwingInput("ref value", 33)), "out": h(s.RefHash("RefHash", xwingInput("ref value", 33)))},
		"expand_with_label": map[string]any{"secret": h(secret), "label": "ExpandWithLabel", "context": h(xwingInput("expand context", 16)), "length": 32,
			"out": h(s.ExpandWithLabel(secret, "ExpandWithLabel", xwingInput("expand context", 16), 32))},
		"derive_secret": map[string]any{"secret": h(secret), "label": "DeriveSecret", "out": h(s.DeriveSecret(secret, "DeriveSecret"))},
		"derive_tree_secret": map[string]any{"secret": h(secret), "label": "DeriveTreeSecret", "generation": 2711, "length": 32,
			"out": h(s.DeriveTreeSecret(secret, "DeriveTreeSecret", 2711, 32))},
		"sign_with_label": map[string]any{"priv": h(sigPriv), "pub": h(sigPub), "content": h(content), "label": "SignWithLabel", "signature": h(sig)},
		"encrypt_with_label": map[string]any{"priv": h(hpkePriv), "pub": h(hpkePub), "label": "EncryptWithLabel", "context": h(ctx),
			"plaintext": h(pt), "kem_output": h(kem), "ciphertext": h(ct)},
	}}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", xwingVectorFile), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestXWingIndependentDerivation recomputes the frozen X-Wing vector's KEM
// half without the package's HPKE (nor crypto/hpke): DeriveKeyPair as
// SHAKE256.LabeledDerive of draft-ietf-hpke-pq, the X-Wing key expansion
// and combiner of draft-connolly-cfrg-xwing-kem-06 on crypto/mlkem and
// crypto/ecdh, and the RFC 9180 base-mode key schedule with suite id
// (0x647A, HKDF-SHA256, ChaCha20-Poly1305) on crypto/hkdf. So the vector is
// X-Wing as specified, not just what this package happens to compute.
func TestXWingIndependentDerivation(t *testing.T) {
	if *writeXWing {
		writeXWingVector(t)
	}
	var cases []cryptoBasicsCase
	loadVectors(t, xwingVectorFile, &cases)
	if len(cases) != 1 || cases[0].Suite != 0x004D {
		t.Fatalf("frozen vector: %d cases", len(cases))
	}
	en := cases[0].EncryptWithLabel

	// DeriveKeyPair(ikm): the private key is the 32-byte X-Wing seed.
	const kemID = 0x647A
	kemSuite := binary.BigEndian.AppendUint16([]byte("KEM"), kemID)
	d := sha3.NewSHAKE256()
	d.Write(xwingInput("hpke ikm", 32))
	d.Write([]byte("HPKE-v1"))
	d.Write(kemSuite)
	d.Write(binary.BigEndian.AppendUint16(nil, uint16(len("DeriveKeyPair"))))
	d.Write([]byte("DeriveKeyPair"))
	d.Write(binary.BigEndian.AppendUint16(nil, 32))
	seed := make([]byte, 32)
	d.Read(seed)
	checkEq(t, "derived private key (seed)", en.Priv, seed)

	// X-Wing expands the seed with SHAKE256 into the ML-KEM-768 seed (64
	// bytes) and the X25519 scalar (32 bytes); pk = ek_M || pk_X.
	x := sha3.NewSHAKE256()
	x.Write(seed)
	expanded := make([]byte, 96)
	x.Read(expanded)
	dkM, err := mlkem.NewDecapsulationKey768(expanded[:64])
	if err != nil {
		t.Fatal(err)
	}
	skX, err := ecdh.X25519().NewPrivateKey(expanded[64:])
	if err != nil {
		t.Fatal(err)
	}
	pkX := skX.PublicKey().Bytes()
	checkEq(t, "public key", en.Pub, append(dkM.EncapsulationKey().Bytes(), pkX...))

	// Decapsulate: enc = ct_M || ct_X; ss = SHA3-256(ss_M || ss_X || ct_X
	// || pk_X || XWingLabel).
	if len(en.KEMOutput) != mlkem.CiphertextSize768+32 {
		t.Fatalf("kem output of %d bytes", len(en.KEMOutput))
	}
	ctM, ctX := en.KEMOutput[:mlkem.CiphertextSize768], en.KEMOutput[mlkem.CiphertextSize768:]
	ssM, err := dkM.Decapsulate(ctM)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ecdh.X25519().NewPublicKey(ctX)
	if err != nil {
		t.Fatal(err)
	}
	ssX, err := skX.ECDH(peer)
	if err != nil {
		t.Fatal(err)
	}
	c := sha3.New256()
	for _, part := range [][]byte{ssM, ssX, ctX, pkX, {0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c}} {
		c.Write(part)
	}
	shared := c.Sum(nil)

	// RFC 9180 KeySchedule, mode_base, empty PSK; info is MLS's
	// EncryptContext{label, context} (RFC 9420, Section 5.1.3).
	hpkeSuite := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16([]byte("HPKE"), kemID), 0x0001), 0x0003)
	extract := func(salt []byte, label string, ikm []byte) []byte {
		prk, err := hkdf.Extract(sha256.New, append(append(append([]byte("HPKE-v1"), hpkeSuite...), label...), ikm...), salt)
		if err != nil {
			t.Fatal(err)
		}
		return prk
	}
	expand := func(prk []byte, label string, info []byte, n int) []byte {
		li := append(append(append(binary.BigEndian.AppendUint16(nil, uint16(n)), "HPKE-v1"...), hpkeSuite...), label...)
		out, err := hkdf.Expand(sha256.New, prk, string(append(li, info...)), n)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	mlsLabel := []byte("MLS 1.0 EncryptWithLabel")
	info := append([]byte{byte(len(mlsLabel))}, mlsLabel...)
	info = append(append(info, byte(len(en.Context))), en.Context...)
	ksc := append(append([]byte{0}, extract(nil, "psk_id_hash", nil)...), extract(nil, "info_hash", info)...)
	secret := extract(shared, "secret", nil)
	aead, err := circlhpke.AEAD_ChaCha20Poly1305.New(expand(secret, "key", ksc, 32))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := aead.Open(nil, expand(secret, "base_nonce", ksc, 12), en.Ciphertext, nil)
	if err != nil {
		t.Fatalf("independent open of the frozen ciphertext: %v", err)
	}
	checkEq(t, "plaintext", pt, en.Plaintext)
	if !bytes.Equal(pt, xwingInput("encrypt plaintext", 48)) {
		t.Error("frozen plaintext is not the documented input")
	}
}
