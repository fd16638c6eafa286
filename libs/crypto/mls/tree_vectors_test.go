package mls_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

func mustTree(t *testing.T, c uint16, b []byte) *tree.Tree {
	t.Helper()
	rt, err := wire.DecodeRatchetTree(b)
	if err != nil {
		t.Fatalf("suite %d: %v", c, err)
	}
	tr, err := tree.FromWire(mustSuite(t, c), rt)
	if err != nil {
		t.Fatalf("suite %d: %v", c, err)
	}
	return tr
}

func TestVectorsTreeValidation(t *testing.T) {
	var cases []struct {
		Suite       uint16     `json:"cipher_suite"`
		Tree        hexBytes   `json:"tree"`
		GroupID     hexBytes   `json:"group_id"`
		TreeHashes  []hexBytes `json:"tree_hashes"`
		Resolutions [][]uint32 `json:"resolutions"`
	}
	loadVectors(t, "tree-validation.json", &cases)
	count := caseCounter{}
	for i, c := range cases {
		tr := mustTree(t, c.Suite, c.Tree)
		if got := wire.Encode(tr.ToWire()); string(got) != string(c.Tree) {
			t.Errorf("case %d: tree does not re-encode", i)
		}
		for x, want := range c.TreeHashes {
			checkEq(t, "tree hash", tr.NodeHash(treemath.NodeIndex(x)), want)
		}
		for x, want := range c.Resolutions {
			got := tr.Resolution(treemath.NodeIndex(x))
			if !slices.Equal(nodeInts(got), want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("case %d node %d: resolution %v, want %v", i, x, got, want)
			}
		}
		if err := tr.VerifyParentHashes(); err != nil {
			t.Errorf("case %d (suite %d): %v", i, c.Suite, err)
		}
		if err := tr.VerifyLeafSignatures(c.GroupID); err != nil {
			t.Errorf("case %d (suite %d): %v", i, c.Suite, err)
		}
		// Tampering with a signature or with a parent's key is detected.
		rt := tr.ToWire()
		bad := *rt[0].Leaf
		bad.Signature = append([]byte{}, bad.Signature...)
		bad.Signature[len(bad.Signature)/2] ^= 1
		rt[0] = &wire.Node{Leaf: &bad}
		for x := 1; x < len(rt); x += 2 {
			if rt[x] != nil {
				p := *rt[x].Parent
				p.EncryptionKey = append([]byte{}, p.EncryptionKey...)
				p.EncryptionKey[0] ^= 1
				rt[x] = &wire.Node{Parent: &p}
				tampered, err := tree.FromWire(mustSuite(t, c.Suite), rt)
				if err != nil {
					t.Fatal(err)
				}
				if err := tampered.VerifyParentHashes(); !errors.Is(err, tree.ErrParentHash) {
					t.Errorf("case %d: tampered parent %d: %v, want ErrParentHash", i, x, err)
				}
				break
			}
		}
		tampered, err := tree.FromWire(mustSuite(t, c.Suite), rt)
		if err != nil {
			t.Fatal(err)
		}
		if err := tampered.VerifyLeafSignatures(c.GroupID); !errors.Is(err, tree.ErrLeafSignature) {
			t.Errorf("case %d: tampered leaf signature: %v, want ErrLeafSignature", i, err)
		}
		count[mustSuite(t, c.Suite).ID()]++
	}
	count.log(t, "tree-validation.json")
}

func nodeInts(xs []treemath.NodeIndex) []uint32 {
	out := make([]uint32, len(xs))
	for i, x := range xs {
		out[i] = uint32(x)
	}
	return out
}

func TestVectorsTreeOperations(t *testing.T) {
	var cases []struct {
		Suite          uint16   `json:"cipher_suite"`
		TreeBefore     hexBytes `json:"tree_before"`
		Proposal       hexBytes `json:"proposal"`
		ProposalSender uint32   `json:"proposal_sender"`
		TreeAfter      hexBytes `json:"tree_after"`
		TreeHashBefore hexBytes `json:"tree_hash_before"`
		TreeHashAfter  hexBytes `json:"tree_hash_after"`
	}
	loadVectors(t, "tree-operations.json", &cases)
	count := caseCounter{}
	for i, c := range cases {
		tr := mustTree(t, c.Suite, c.TreeBefore)
		checkEq(t, "tree hash before", tr.TreeHash(), c.TreeHashBefore)
		p, err := wire.DecodeProposal(c.Proposal)
		if err != nil {
			t.Fatal(err)
		}
		switch p.Type {
		case wire.ProposalAdd:
			tr.Add(&p.KeyPackage.LeafNode)
		case wire.ProposalUpdate:
			err = tr.Update(treemath.LeafIndex(c.ProposalSender), p.LeafNode)
		case wire.ProposalRemove:
			err = tr.Remove(treemath.LeafIndex(p.Removed))
		default:
			t.Fatalf("case %d: proposal type %d", i, p.Type)
		}
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		checkEq(t, "tree after", wire.Encode(tr.ToWire()), c.TreeAfter)
		checkEq(t, "tree hash after", tr.TreeHash(), c.TreeHashAfter)
		// The cached hashes agree with a tree decoded from scratch.
		checkEq(t, "tree hash after (fresh)", mustTree(t, c.Suite, c.TreeAfter).TreeHash(), c.TreeHashAfter)
		count[mustSuite(t, c.Suite).ID()]++
	}
	count.log(t, "tree-operations.json")
}
