package mls_test

import (
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
)

func TestVectorsDeserialization(t *testing.T) {
	var cases []struct {
		Header hexBytes `json:"vlbytes_header"`
		Length int      `json:"length"`
	}
	loadVectors(t, "deserialization.json", &cases)
	for _, c := range cases {
		n, size, err := tlscodec.ParseVarint(c.Header)
		if err != nil || n != c.Length || size != len(c.Header) {
			t.Errorf("header %x: got %d (%d bytes, err %v), want %d", c.Header, n, size, err, c.Length)
		}
		if got := tlscodec.AppendVarint(nil, c.Length); string(got) != string(c.Header) {
			t.Errorf("length %d: encoded %x, want %x", c.Length, got, c.Header)
		}
	}
	t.Logf("deserialization.json: %d cases run (suite-independent)", len(cases))
}

func TestVectorsTreeMath(t *testing.T) {
	var cases []struct {
		NLeaves uint32    `json:"n_leaves"`
		NNodes  uint32    `json:"n_nodes"`
		Root    uint32    `json:"root"`
		Left    []*uint32 `json:"left"`
		Right   []*uint32 `json:"right"`
		Parent  []*uint32 `json:"parent"`
		Sibling []*uint32 `json:"sibling"`
	}
	loadVectors(t, "tree-math.json", &cases)
	for _, c := range cases {
		if w := treemath.Width(c.NLeaves); w != c.NNodes {
			t.Errorf("n=%d: width %d, want %d", c.NLeaves, w, c.NNodes)
		}
		root := treemath.Root(c.NLeaves)
		if uint32(root) != c.Root {
			t.Errorf("n=%d: root %d, want %d", c.NLeaves, root, c.Root)
		}
		for i := range c.NNodes {
			x := treemath.NodeIndex(i)
			check := func(what string, want *uint32, got func() treemath.NodeIndex, defined bool) {
				t.Helper()
				if want == nil {
					if defined {
						t.Errorf("n=%d node %d: %s defined, want none", c.NLeaves, i, what)
					}
					return
				}
				if !defined || uint32(got()) != *want {
					t.Errorf("n=%d node %d: %s wrong, want %d", c.NLeaves, i, what, *want)
				}
			}
			check("left", c.Left[i], x.Left, !x.IsLeaf())
			check("right", c.Right[i], x.Right, !x.IsLeaf())
			check("parent", c.Parent[i], x.Parent, x != root)
			check("sibling", c.Sibling[i], x.Sibling, x != root)
		}
	}
	t.Logf("tree-math.json: %d cases run (suite-independent)", len(cases))
}

// TestVectorsCryptoBasics runs the working group's crypto-basics.json and
// the frozen vector of the X-Wing suite in the same format
// (testdata/xwing/, see TestXWingIndependentDerivation).
func TestVectorsCryptoBasics(t *testing.T) {
	for _, file := range []string{"crypto-basics.json", "xwing/crypto-basics-0x004d.json"} {
		runCryptoBasics(t, file)
	}
}

// cryptoBasicsCase is one case of crypto-basics.json.
type cryptoBasicsCase struct {
	Suite   uint16 `json:"cipher_suite"`
	RefHash struct {
		Label string   `json:"label"`
		Out   hexBytes `json:"out"`
		Value hexBytes `json:"value"`
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  hexBytes `json:"secret"`
		Label   string   `json:"label"`
		Context hexBytes `json:"context"`
		Length  int      `json:"length"`
		Out     hexBytes `json:"out"`
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Label  string   `json:"label"`
		Secret hexBytes `json:"secret"`
		Out    hexBytes `json:"out"`
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     hexBytes `json:"secret"`
		Label      string   `json:"label"`
		Generation uint32   `json:"generation"`
		Length     int      `json:"length"`
		Out        hexBytes `json:"out"`
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv      hexBytes `json:"priv"`
		Pub       hexBytes `json:"pub"`
		Content   hexBytes `json:"content"`
		Label     string   `json:"label"`
		Signature hexBytes `json:"signature"`
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv       hexBytes `json:"priv"`
		Pub        hexBytes `json:"pub"`
		Label      string   `json:"label"`
		Context    hexBytes `json:"context"`
		Plaintext  hexBytes `json:"plaintext"`
		KEMOutput  hexBytes `json:"kem_output"`
		Ciphertext hexBytes `json:"ciphertext"`
	} `json:"encrypt_with_label"`
}

func runCryptoBasics(t *testing.T, file string) {
	var cases []cryptoBasicsCase
	loadVectors(t, file, &cases)
	count := caseCounter{}
	for _, c := range cases {
		s := mustSuite(t, c.Suite)
		checkEq(t, "ref_hash", s.RefHash(c.RefHash.Label, c.RefHash.Value), c.RefHash.Out)
		e := c.ExpandWithLabel
		checkEq(t, "expand_with_label", s.ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length), e.Out)
		checkEq(t, "derive_secret", s.DeriveSecret(c.DeriveSecret.Secret, c.DeriveSecret.Label), c.DeriveSecret.Out)
		d := c.DeriveTreeSecret
		checkEq(t, "derive_tree_secret", s.DeriveTreeSecret(d.Secret, d.Label, d.Generation, d.Length), d.Out)

		sg := c.SignWithLabel
		if err := s.VerifyWithLabel(sg.Pub, sg.Label, sg.Content, sg.Signature); err != nil {
			t.Errorf("suite %d: verify vector signature: %v", c.Suite, err)
		}
		if pub, err := s.SignaturePublicKey(sg.Priv); err != nil {
			t.Errorf("suite %d: signature public key: %v", c.Suite, err)
		} else {
			checkEq(t, "signature public key", pub, sg.Pub)
		}
		sig, err := s.SignWithLabel(sg.Priv, sg.Label, sg.Content)
		if err != nil {
			t.Fatalf("suite %d: sign: %v", c.Suite, err)
		}
		if err := s.VerifyWithLabel(sg.Pub, sg.Label, sg.Content, sig); err != nil {
			t.Errorf("suite %d: verify own signature: %v", c.Suite, err)
		}
		if err := s.VerifyWithLabel(sg.Pub, sg.Label+"x", sg.Content, sig); !errors.Is(err, suite.ErrBadSignature) {
			t.Errorf("suite %d: signature under another label: %v, want ErrBadSignature", c.Suite, err)
		}

		en := c.EncryptWithLabel
		pt, err := s.DecryptWithLabel(en.Priv, en.Label, en.Context, en.KEMOutput, en.Ciphertext)
		if err != nil {
			t.Errorf("suite %d: decrypt vector: %v", c.Suite, err)
		}
		checkEq(t, "decrypt_with_label", pt, en.Plaintext)
		if pub, err := s.HPKEPublicKey(en.Priv); err != nil {
			t.Errorf("suite %d: hpke public key: %v", c.Suite, err)
		} else {
			checkEq(t, "hpke public key", pub, en.Pub)
		}
		kem, ct, err := s.EncryptWithLabel(en.Pub, en.Label, en.Context, en.Plaintext)
		if err != nil {
			t.Fatalf("suite %d: encrypt: %v", c.Suite, err)
		}
		pt, err = s.DecryptWithLabel(en.Priv, en.Label, en.Context, kem, ct)
		if err != nil {
			t.Errorf("suite %d: decrypt own ciphertext: %v", c.Suite, err)
		}
		checkEq(t, "encrypt/decrypt round trip", pt, en.Plaintext)
		ct[0] ^= 1
		if _, err := s.DecryptWithLabel(en.Priv, en.Label, en.Context, kem, ct); !errors.Is(err, suite.ErrDecrypt) {
			t.Errorf("suite %d: tampered ciphertext: %v, want ErrDecrypt", c.Suite, err)
		}
		count[s.ID()]++
	}
	count.log(t, file)
}
