package treemath

import (
	"slices"
	"testing"
)

// TestPathsAgainstParents checks direct paths, copaths and common ancestors
// against walks over Parent, for every node of trees up to 64 leaves.
func TestPathsAgainstParents(t *testing.T) {
	for n := uint32(1); n <= 64; n *= 2 {
		root := Root(n)
		for x := NodeIndex(0); uint32(x) < Width(n); x++ {
			var want []NodeIndex
			for y := x; y != root; {
				y = y.Parent()
				want = append(want, y)
			}
			if got := DirectPath(x, n); !slices.Equal(got, want) {
				t.Errorf("n=%d: DirectPath(%d) = %v, want %v", n, x, got, want)
			}
			cp := Copath(x, n)
			if len(cp) != len(want) {
				t.Fatalf("n=%d: Copath(%d) has %d nodes, want %d", n, x, len(cp), len(want))
			}
			for i, c := range cp {
				if c.Parent() != want[i] {
					t.Errorf("n=%d: copath node %d of %d has parent %d, want %d", n, c, x, c.Parent(), want[i])
				}
			}
			for y := NodeIndex(0); uint32(y) < Width(n); y++ {
				a := CommonAncestor(x, y)
				if !InSubtree(x, a) || !InSubtree(y, a) {
					t.Fatalf("n=%d: CommonAncestor(%d, %d) = %d does not hold both", n, x, y, a)
				}
				if !a.IsLeaf() && InSubtree(x, a.Left()) && InSubtree(y, a.Left()) || !a.IsLeaf() && InSubtree(x, a.Right()) && InSubtree(y, a.Right()) {
					t.Errorf("n=%d: CommonAncestor(%d, %d) = %d is not the lowest", n, x, y, a)
				}
			}
		}
	}
}

func TestLeafNode(t *testing.T) {
	for l := LeafIndex(0); l < 100; l++ {
		if x := l.Node(); !x.IsLeaf() || x.Leaf() != l || x.Level() != 0 {
			t.Errorf("leaf %d: node %d", l, x)
		}
	}
}
