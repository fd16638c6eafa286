// Package tree is the MLS ratchet tree in its array representation ([RFC
// 9420, Sections 4, 7 and 12.1]): resolution, tree hash, parent hash and
// their validation, leaf signatures, and the Add, Update and Remove
// operations. TreeKEM (creating and applying UpdatePaths) is in treekem.go.
//
// Subtree hashes are cached per node and invalidated along the path to the
// root when a node changes, so that a commit in a large group rehashes only
// the nodes it touches.
//
// [RFC 9420, Sections 4, 7 and 12.1]: https://www.rfc-editor.org/rfc/rfc9420#section-7
package tree

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// Errors returned (wrapped) by this package. Test for them with errors.Is.
var (
	// ErrBadShape means a ratchet tree whose node types, size or trailing
	// blanks are not those of a valid tree.
	ErrBadShape = errors.New("mls: malformed ratchet tree")
	// ErrParentHash means a parent node is not parent-hash valid, or an
	// UpdatePath's leaf carries the wrong parent hash.
	ErrParentHash = errors.New("mls: parent hash mismatch")
	// ErrLeafSignature means a leaf node's signature does not verify.
	ErrLeafSignature = errors.New("mls: leaf node signature invalid")
	// ErrBlankLeaf means an operation named a blank or absent leaf.
	ErrBlankLeaf = errors.New("mls: leaf is blank or out of range")
	// ErrBadUnmerged means an unmerged leaf list names a leaf outside the
	// node's subtree or a blank leaf, or a non-blank node between that leaf
	// and the parent does not list it too (RFC 9420, Section 12.4.3.1).
	ErrBadUnmerged = errors.New("mls: invalid unmerged leaves")
	// ErrDuplicateKey means two nodes share an encryption key or two leaves
	// share a signature key (RFC 9420, Sections 7.3 and 12.4.3.1).
	ErrDuplicateKey = errors.New("mls: key used by two tree nodes")
)

// maxLeaves bounds the size of a tree accepted from the wire.
const maxLeaves = 1 << 20

// Tree is a ratchet tree. It is not safe for concurrent use.
type Tree struct {
	s      *suite.Suite
	nodes  []wire.Node // len is 2*leaves-1; both fields nil means blank
	hashes [][]byte    // cached tree hash per node; nil when stale
}

// New returns a one-leaf tree holding leaf.
func New(s *suite.Suite, leaf *wire.LeafNode) *Tree {
	return &Tree{s: s, nodes: []wire.Node{{Leaf: leaf}}, hashes: make([][]byte, 1)}
}

// FromWire builds a tree from its wire form (trailing blank nodes omitted),
// checking that leaves and parents sit at even and odd indices, that the
// last node is a non-blank leaf, and that unmerged leaves are plausible.
func FromWire(s *suite.Suite, rt wire.RatchetTree) (*Tree, error) {
	if len(rt) == 0 || len(rt)%2 == 0 {
		return nil, fmt.Errorf("%w: %d nodes", ErrBadShape, len(rt))
	}
	if rt[len(rt)-1] == nil {
		return nil, fmt.Errorf("%w: trailing blank node", ErrBadShape)
	}
	used := uint32(len(rt)+1) / 2
	if used > maxLeaves {
		return nil, fmt.Errorf("%w: %d leaves", ErrBadShape, used)
	}
	leaves := uint32(1)
	for leaves < used {
		leaves *= 2
	}
	t := &Tree{s: s, nodes: make([]wire.Node, treemath.Width(leaves)), hashes: make([][]byte, treemath.Width(leaves))}
	for i, n := range rt {
		if n == nil {
			continue
		}
		isLeaf := i%2 == 0
		if isLeaf != (n.Leaf != nil) {
			return nil, fmt.Errorf("%w: node %d has the wrong type", ErrBadShape, i)
		}
		t.nodes[i] = *n
	}
	for i := 1; i < len(t.nodes); i += 2 {
		p := t.nodes[i].Parent
		if p == nil {
			continue
		}
		x := treemath.NodeIndex(i)
		for _, u := range p.UnmergedLeaves {
			l := treemath.LeafIndex(u)
			if uint32(u) >= leaves || !treemath.InSubtree(l.Node(), x) || t.nodes[l.Node()].Leaf == nil {
				return nil, fmt.Errorf("%w: node %d lists leaf %d", ErrBadUnmerged, i, u)
			}
			// A leaf unmerged at x was added after x was last set, so every
			// non-blank node below x on its path was set before it too.
			for y := l.Node().Parent(); y != x; y = y.Parent() {
				if q := t.nodes[y].Parent; q != nil && !slices.Contains(q.UnmergedLeaves, u) {
					return nil, fmt.Errorf("%w: node %d lists leaf %d but node %d does not", ErrBadUnmerged, i, u, y)
				}
			}
		}
	}
	return t, nil
}

// CheckUniqueKeys checks that no encryption key appears in two nodes and no
// signature key in two leaves, as a joiner must for a received tree.
func (t *Tree) CheckUniqueKeys() error {
	enc := make(map[string]treemath.NodeIndex, len(t.nodes))
	sig := make(map[string]treemath.NodeIndex, len(t.nodes)/2+1)
	for i := range t.nodes {
		x := treemath.NodeIndex(i)
		key := t.EncryptionKey(x)
		if key == nil {
			continue
		}
		if y, ok := enc[string(key)]; ok {
			return fmt.Errorf("%w: encryption key of node %d and node %d", ErrDuplicateKey, y, x)
		}
		enc[string(key)] = x
		if leaf := t.nodes[i].Leaf; leaf != nil {
			if y, ok := sig[string(leaf.SignatureKey)]; ok {
				return fmt.Errorf("%w: signature key of node %d and node %d", ErrDuplicateKey, y, x)
			}
			sig[string(leaf.SignatureKey)] = x
		}
	}
	return nil
}

// ToWire returns the wire form of t, trailing blank nodes omitted.
func (t *Tree) ToWire() wire.RatchetTree {
	end := len(t.nodes)
	for end > 0 && isBlank(&t.nodes[end-1]) {
		end--
	}
	rt := make(wire.RatchetTree, end)
	for i := range end {
		if !isBlank(&t.nodes[i]) {
			n := t.nodes[i]
			rt[i] = &n
		}
	}
	return rt
}

// Clone returns a copy of t that shares node contents (which are never
// mutated in place) but not the node array.
func (t *Tree) Clone() *Tree {
	c := &Tree{s: t.s, nodes: slices.Clone(t.nodes), hashes: slices.Clone(t.hashes)}
	return c
}

func isBlank(n *wire.Node) bool { return n.Leaf == nil && n.Parent == nil }

// LeafCount is the number of leaf slots (a power of two).
func (t *Tree) LeafCount() uint32 { return uint32(len(t.nodes)+1) / 2 }

// Root is the root node index.
func (t *Tree) Root() treemath.NodeIndex { return treemath.Root(t.LeafCount()) }

// Leaf returns leaf l, or nil if it is blank or out of range.
func (t *Tree) Leaf(l treemath.LeafIndex) *wire.LeafNode {
	if uint32(l) >= t.LeafCount() {
		return nil
	}
	return t.nodes[l.Node()].Leaf
}

// ParentNode returns parent x, or nil if it is blank.
func (t *Tree) ParentNode(x treemath.NodeIndex) *wire.ParentNode { return t.nodes[x].Parent }

// IsBlank reports whether node x is blank.
func (t *Tree) IsBlank(x treemath.NodeIndex) bool { return isBlank(&t.nodes[x]) }

// EncryptionKey returns the HPKE public key of non-blank node x.
func (t *Tree) EncryptionKey(x treemath.NodeIndex) []byte {
	if n := &t.nodes[x]; n.Leaf != nil {
		return n.Leaf.EncryptionKey
	} else if n.Parent != nil {
		return n.Parent.EncryptionKey
	}
	return nil
}

// Members calls f for each non-blank leaf in index order.
func (t *Tree) Members(f func(treemath.LeafIndex, *wire.LeafNode)) {
	for i := 0; i < len(t.nodes); i += 2 {
		if l := t.nodes[i].Leaf; l != nil {
			f(treemath.NodeIndex(i).Leaf(), l)
		}
	}
}

// set replaces node x and marks the hashes from x to the root stale.
func (t *Tree) set(x treemath.NodeIndex, n wire.Node) {
	t.nodes[x] = n
	t.invalidate(x)
}

func (t *Tree) invalidate(x treemath.NodeIndex) {
	root := t.Root()
	for {
		t.hashes[x] = nil
		if x == root {
			return
		}
		x = x.Parent()
	}
}

// Resolution is the resolution of x (RFC 9420, Section 4.1.1).
func (t *Tree) Resolution(x treemath.NodeIndex) []treemath.NodeIndex {
	return t.appendResolution(nil, x)
}

func (t *Tree) appendResolution(out []treemath.NodeIndex, x treemath.NodeIndex) []treemath.NodeIndex {
	n := &t.nodes[x]
	switch {
	case n.Leaf != nil:
		return append(out, x)
	case n.Parent != nil:
		out = append(out, x)
		for _, u := range n.Parent.UnmergedLeaves {
			out = append(out, treemath.LeafIndex(u).Node())
		}
		return out
	case x.IsLeaf():
		return out
	default:
		out = t.appendResolution(out, x.Left())
		return t.appendResolution(out, x.Right())
	}
}

// TreeHash is the tree hash of the whole tree.
func (t *Tree) TreeHash() []byte { return t.NodeHash(t.Root()) }

// NodeHash is the tree hash of the subtree rooted at x (RFC 9420, Section
// 7.8), from the cache when fresh.
func (t *Tree) NodeHash(x treemath.NodeIndex) []byte {
	if h := t.hashes[x]; h != nil {
		return h
	}
	var h []byte
	if x.IsLeaf() {
		h = t.leafHash(x, t.nodes[x].Leaf)
	} else {
		h = t.parentHashInput(t.nodes[x].Parent, t.NodeHash(x.Left()), t.NodeHash(x.Right()))
	}
	t.hashes[x] = h
	return h
}

func (t *Tree) leafHash(x treemath.NodeIndex, leaf *wire.LeafNode) []byte {
	w := tlscodec.NewWriter(nil)
	w.Uint8(1)
	w.Uint32(uint32(x.Leaf()))
	if leaf == nil {
		w.Uint8(0)
	} else {
		w.Uint8(1)
		leaf.Marshal(w)
	}
	return t.s.Hash(w.Bytes())
}

func (t *Tree) parentHashInput(p *wire.ParentNode, left, right []byte) []byte {
	w := tlscodec.NewWriter(nil)
	w.Uint8(2)
	if p == nil {
		w.Uint8(0)
	} else {
		w.Uint8(1)
		p.Marshal(w)
	}
	w.Opaque(left)
	w.Opaque(right)
	return t.s.Hash(w.Bytes())
}

// hashExcluding is the tree hash of x with the leaves in excl blanked and
// removed from every unmerged list: the "original" hash of a sibling before
// those leaves were added (RFC 9420, Section 7.9).
func (t *Tree) hashExcluding(x treemath.NodeIndex, excl []uint32) []byte {
	touches := false
	for _, u := range excl {
		if treemath.InSubtree(treemath.LeafIndex(u).Node(), x) {
			touches = true
			break
		}
	}
	if !touches {
		return t.NodeHash(x)
	}
	if x.IsLeaf() {
		if slices.Contains(excl, uint32(x.Leaf())) {
			return t.leafHash(x, nil)
		}
		return t.leafHash(x, t.nodes[x].Leaf)
	}
	p := t.nodes[x].Parent
	if p != nil {
		kept := slices.DeleteFunc(slices.Clone(p.UnmergedLeaves), func(u uint32) bool { return slices.Contains(excl, u) })
		p = &wire.ParentNode{EncryptionKey: p.EncryptionKey, ParentHash: p.ParentHash, UnmergedLeaves: kept}
	}
	return t.parentHashInput(p, t.hashExcluding(x.Left(), excl), t.hashExcluding(x.Right(), excl))
}

// ParentHash is the parent hash that the child of p towards the sibling's
// other side carries: Hash(ParentHashInput{p.key, p.parent_hash,
// original_sibling_tree_hash}).
func (t *Tree) ParentHash(p treemath.NodeIndex, sibling treemath.NodeIndex) []byte {
	pn := t.nodes[p].Parent
	w := tlscodec.NewWriter(nil)
	w.Opaque(pn.EncryptionKey)
	w.Opaque(pn.ParentHash)
	w.Opaque(t.hashExcluding(sibling, pn.UnmergedLeaves))
	return t.s.Hash(w.Bytes())
}

// nodeParentHash returns the parent_hash field of node x (nil for leaves not
// made by a commit).
func (t *Tree) nodeParentHash(x treemath.NodeIndex) []byte {
	n := &t.nodes[x]
	if n.Leaf != nil {
		if n.Leaf.Source != wire.SourceCommit {
			return nil
		}
		return n.Leaf.ParentHash
	}
	if n.Parent != nil {
		return n.Parent.ParentHash
	}
	return nil
}

// VerifyParentHashes checks that every non-blank parent node is
// parent-hash valid (RFC 9420, Section 7.9.2): some node in the resolution
// of one child, outside its unmerged leaves, carries its parent hash computed
// with the other child as sibling.
func (t *Tree) VerifyParentHashes() error {
	for i := 1; i < len(t.nodes); i += 2 {
		x := treemath.NodeIndex(i)
		p := t.nodes[x].Parent
		if p == nil {
			continue
		}
		if !t.parentHashValidFrom(x, x.Left(), x.Right(), p) && !t.parentHashValidFrom(x, x.Right(), x.Left(), p) {
			return fmt.Errorf("%w: node %d", ErrParentHash, x)
		}
	}
	return nil
}

func (t *Tree) parentHashValidFrom(p, child, sibling treemath.NodeIndex, pn *wire.ParentNode) bool {
	want := t.ParentHash(p, sibling)
	for _, d := range t.Resolution(child) {
		if d.IsLeaf() && slices.Contains(pn.UnmergedLeaves, uint32(d.Leaf())) {
			continue
		}
		if bytes.Equal(t.nodeParentHash(d), want) {
			return true
		}
	}
	return false
}

// VerifyLeafSignatures checks the signature of every non-blank leaf,
// spread over all CPUs for large trees: a joiner verifies one signature per
// member, which dominates the cost of joining a large group.
func (t *Tree) VerifyLeafSignatures(groupID []byte) error {
	var leaves []treemath.LeafIndex
	t.Members(func(l treemath.LeafIndex, _ *wire.LeafNode) { leaves = append(leaves, l) })
	workers := runtime.GOMAXPROCS(0)
	if len(leaves) < parallelThreshold {
		workers = 1
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(leaves); i += workers {
				l := leaves[i]
				if err := VerifyLeafSignature(t.s, t.nodes[l.Node()].Leaf, groupID, uint32(l)); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// leafNodeLabel is the SignWithLabel label of LeafNodeTBS.
const leafNodeLabel = "LeafNodeTBS"

// VerifyLeafSignature checks leaf's signature as leaf index l of group
// groupID (the two are ignored for key-package leaves).
func VerifyLeafSignature(s *suite.Suite, leaf *wire.LeafNode, groupID []byte, l uint32) error {
	if err := s.VerifyWithLabel(leaf.SignatureKey, leafNodeLabel, leaf.TBS(groupID, l), leaf.Signature); err != nil {
		return fmt.Errorf("%w: leaf %d: %w", ErrLeafSignature, l, err)
	}
	return nil
}

// SignLeaf sets leaf's signature as leaf index l of group groupID.
func SignLeaf(s *suite.Suite, leaf *wire.LeafNode, sigPriv, groupID []byte, l uint32) error {
	sig, err := s.SignWithLabel(sigPriv, leafNodeLabel, leaf.TBS(groupID, l))
	if err != nil {
		return fmt.Errorf("sign leaf node: %w", err)
	}
	leaf.Signature = sig
	return nil
}

// Add places leaf in the leftmost blank leaf slot, doubling the tree when
// none is free, and records it as unmerged on the non-blank parents above.
func (t *Tree) Add(leaf *wire.LeafNode) treemath.LeafIndex {
	l := treemath.LeafIndex(0)
	for ; uint32(l) < t.LeafCount(); l++ {
		if t.nodes[l.Node()].Leaf == nil {
			break
		}
	}
	if uint32(l) == t.LeafCount() {
		n := len(t.nodes)
		t.nodes = append(t.nodes, make([]wire.Node, n+1)...)
		t.hashes = append(t.hashes, make([][]byte, n+1)...)
	}
	t.set(l.Node(), wire.Node{Leaf: leaf})
	for _, x := range treemath.DirectPath(l.Node(), t.LeafCount()) {
		if p := t.nodes[x].Parent; p != nil {
			np := *p
			np.UnmergedLeaves = append(slices.Clone(p.UnmergedLeaves), uint32(l))
			t.set(x, wire.Node{Parent: &np})
		}
	}
	return l
}

// Update replaces leaf l and blanks its direct path.
func (t *Tree) Update(l treemath.LeafIndex, leaf *wire.LeafNode) error {
	if t.Leaf(l) == nil {
		return fmt.Errorf("%w: update of leaf %d", ErrBlankLeaf, l)
	}
	t.set(l.Node(), wire.Node{Leaf: leaf})
	t.blankDirectPath(l)
	return nil
}

func (t *Tree) blankDirectPath(l treemath.LeafIndex) {
	for _, x := range treemath.DirectPath(l.Node(), t.LeafCount()) {
		if !isBlank(&t.nodes[x]) {
			t.set(x, wire.Node{})
		}
	}
}

// Remove blanks leaf l and its direct path, then truncates the tree while
// its right half holds no member.
func (t *Tree) Remove(l treemath.LeafIndex) error {
	if t.Leaf(l) == nil {
		return fmt.Errorf("%w: removal of leaf %d", ErrBlankLeaf, l)
	}
	t.set(l.Node(), wire.Node{})
	t.blankDirectPath(l)
	t.truncate()
	return nil
}

func (t *Tree) truncate() {
	for t.LeafCount() > 1 {
		half := len(t.nodes) / 2 // the old root's index
		for i := half + 1; i < len(t.nodes); i += 2 {
			if t.nodes[i].Leaf != nil {
				return
			}
		}
		t.nodes = t.nodes[:half]
		t.hashes = t.hashes[:half]
	}
}
