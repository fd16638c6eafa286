// Package treemath is the index arithmetic of the MLS array-based ratchet
// tree ([RFC 9420, Section 4.2 and Appendix C]): leaves sit at even node
// indices, parents at odd ones, and the leaf count is always a power of two.
//
// [RFC 9420, Section 4.2 and Appendix C]: https://www.rfc-editor.org/rfc/rfc9420#appendix-C
package treemath

import "math/bits"

// NodeIndex is a position in the array representation of the tree.
type NodeIndex uint32

// LeafIndex is the position of a leaf among the leaves.
type LeafIndex uint32

// Node returns the node index of leaf l.
func (l LeafIndex) Node() NodeIndex { return NodeIndex(2 * l) }

// IsLeaf reports whether x is a leaf.
func (x NodeIndex) IsLeaf() bool { return x&1 == 0 }

// Leaf returns the leaf index of x, which must be a leaf.
func (x NodeIndex) Leaf() LeafIndex { return LeafIndex(x >> 1) }

// Level is the height of x above the leaves (0 for a leaf).
func (x NodeIndex) Level() uint { return uint(bits.TrailingZeros32(^uint32(x))) }

// Width is the number of nodes of a tree with n leaves.
func Width(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// Root is the root of a tree with n leaves (n a power of two).
func Root(n uint32) NodeIndex {
	w := Width(n)
	return NodeIndex(1<<(bits.Len32(w)-1) - 1)
}

// Left is the left child of the parent x.
func (x NodeIndex) Left() NodeIndex {
	k := x.Level()
	return x ^ (1 << (k - 1))
}

// Right is the right child of the parent x.
func (x NodeIndex) Right() NodeIndex {
	k := x.Level()
	return x ^ (3 << (k - 1))
}

// Parent is the parent of x, which must not be the root.
func (x NodeIndex) Parent() NodeIndex {
	k := x.Level()
	return (x | (1 << k)) &^ (1 << (k + 1))
}

// Sibling is the other child of x's parent.
func (x NodeIndex) Sibling() NodeIndex {
	p := x.Parent()
	if x < p {
		return p.Right()
	}
	return p.Left()
}

// DirectPath lists the ancestors of x from its parent to the root of a tree
// with n leaves; it is empty for the root.
func DirectPath(x NodeIndex, n uint32) []NodeIndex {
	r := Root(n)
	if x == r {
		return nil
	}
	var d []NodeIndex
	for x != r {
		x = x.Parent()
		d = append(d, x)
	}
	return d
}

// Copath lists the siblings of x and of its ancestors below the root.
func Copath(x NodeIndex, n uint32) []NodeIndex {
	r := Root(n)
	var c []NodeIndex
	for x != r {
		c = append(c, x.Sibling())
		x = x.Parent()
	}
	return c
}

// CommonAncestor is the lowest node whose subtree holds both x and y.
func CommonAncestor(x, y NodeIndex) NodeIndex {
	a := x
	for !InSubtree(y, a) {
		a = a.Parent()
	}
	return a
}

// InSubtree reports whether x lies in the subtree rooted at a.
func InSubtree(x, a NodeIndex) bool {
	half := NodeIndex(1)<<a.Level() - 1
	return x+half >= a && x <= a+half
}
