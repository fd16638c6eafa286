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
