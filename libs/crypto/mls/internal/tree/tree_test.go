package tree

import (
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

func TestFromWireRejectsBadShapes(t *testing.T) {
	s, err := suite.New(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &wire.Node{Leaf: &wire.LeafNode{EncryptionKey: []byte{1}}}
	parent := &wire.Node{Parent: &wire.ParentNode{EncryptionKey: []byte{2}}}
	unmerged := func(ls ...uint32) *wire.Node {
		return &wire.Node{Parent: &wire.ParentNode{EncryptionKey: []byte{3}, UnmergedLeaves: ls}}
	}
	cases := []struct {
		name string
		rt   wire.RatchetTree
		want error
	}{
		{"empty", nil, ErrBadShape},
		{"even length", wire.RatchetTree{leaf, parent}, ErrBadShape},
		{"trailing blank", wire.RatchetTree{leaf, nil, nil}, ErrBadShape},
		{"parent at a leaf index", wire.RatchetTree{parent, nil, leaf}, ErrBadShape},
		{"leaf at a parent index", wire.RatchetTree{leaf, leaf, leaf}, ErrBadShape},
		{"unmerged leaf outside the subtree", wire.RatchetTree{leaf, unmerged(3), leaf, nil, leaf}, ErrBadUnmerged},
		{"unmerged blank leaf", wire.RatchetTree{nil, unmerged(0), leaf}, ErrBadUnmerged},
	}
	for _, c := range cases {
		if _, err := FromWire(s, c.rt); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	tr, err := FromWire(s, wire.RatchetTree{leaf, unmerged(1), leaf})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Remove(5); !errors.Is(err, ErrBlankLeaf) {
		t.Errorf("remove of an absent leaf: %v", err)
	}
	// Removing the last leaf truncates the tree to one leaf.
	if err := tr.Remove(1); err != nil || tr.LeafCount() != 1 {
		t.Errorf("truncate: %v, %d leaves", err, tr.LeafCount())
	}
}

func TestFromWireRejectsBrokenUnmergedChain(t *testing.T) {
	s, err := suite.New(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(k byte) *wire.Node {
		return &wire.Node{Leaf: &wire.LeafNode{EncryptionKey: []byte{k}, SignatureKey: []byte{k}}}
	}
	parent := func(k byte, unmerged ...uint32) *wire.Node {
		return &wire.Node{Parent: &wire.ParentNode{EncryptionKey: []byte{k}, UnmergedLeaves: unmerged}}
	}
	// Leaf 0 is unmerged at the root (node 3) but not at node 1 between them.
	broken := wire.RatchetTree{leaf(1), parent(2), leaf(3), parent(4, 0), leaf(5)}
	if _, err := FromWire(s, broken); !errors.Is(err, ErrBadUnmerged) {
		t.Errorf("unmerged at the root only: %v, want ErrBadUnmerged", err)
	}
	ok := wire.RatchetTree{leaf(1), parent(2, 0), leaf(3), parent(4, 0), leaf(5)}
	if _, err := FromWire(s, ok); err != nil {
		t.Errorf("unmerged at every non-blank node: %v", err)
	}
	// A blank node in between need not list it.
	if _, err := FromWire(s, wire.RatchetTree{leaf(1), nil, leaf(3), parent(4, 0), leaf(5)}); err != nil {
		t.Errorf("blank node in between: %v", err)
	}
}

func TestCheckUniqueKeys(t *testing.T) {
	s, err := suite.New(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(enc, sig byte) *wire.Node {
		return &wire.Node{Leaf: &wire.LeafNode{EncryptionKey: []byte{enc}, SignatureKey: []byte{sig}}}
	}
	parent := func(enc byte) *wire.Node { return &wire.Node{Parent: &wire.ParentNode{EncryptionKey: []byte{enc}}} }
	cases := []struct {
		name string
		rt   wire.RatchetTree
		want error
	}{
		{"distinct", wire.RatchetTree{leaf(1, 1), parent(2), leaf(3, 3)}, nil},
		{"two leaves share an encryption key", wire.RatchetTree{leaf(1, 1), parent(2), leaf(1, 3)}, ErrDuplicateKey},
		{"parent reuses a leaf key", wire.RatchetTree{leaf(1, 1), parent(3), leaf(3, 3)}, ErrDuplicateKey},
		{"two leaves share a signature key", wire.RatchetTree{leaf(1, 7), parent(2), leaf(3, 7)}, ErrDuplicateKey},
	}
	for _, c := range cases {
		tr, err := FromWire(s, c.rt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := tr.CheckUniqueKeys(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
