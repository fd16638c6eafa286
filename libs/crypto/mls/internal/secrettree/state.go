package secrettree

import (
	"fmt"
	"maps"
	"slices"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
)

// Clone returns a copy of t that shares no secret bytes with it: node
// secrets, ratchet secrets and skipped keys are copied, since using a key
// erases it in place.
func (t *Tree) Clone() *Tree {
	c := &Tree{suite: t.suite, leaves: t.leaves, limits: t.limits, nodes: make(map[treemath.NodeIndex][]byte, len(t.nodes)), ratchets: make(map[ratchetID]*ratchet, len(t.ratchets))}
	for x, s := range t.nodes {
		c.nodes[x] = slices.Clone(s)
	}
	for id, r := range t.ratchets {
		cr := *r
		cr.secret = slices.Clone(r.secret)
		cr.skipped = nil
		if r.skipped != nil {
			cr.skipped = make(map[uint32]*KeyNonce, len(r.skipped))
			for g, kn := range r.skipped {
				cr.skipped[g] = &KeyNonce{Generation: kn.Generation, Key: slices.Clone(kn.Key), Nonce: slices.Clone(kn.Nonce)}
			}
		}
		cr.skipOrder = slices.Clone(r.skipOrder)
		c.ratchets[id] = &cr
	}
	return c
}

// Erase zeroes every secret t still holds.
func (t *Tree) Erase() {
	for _, s := range t.nodes {
		clear(s)
	}
	for _, r := range t.ratchets {
		clear(r.secret)
		for _, kn := range r.skipped {
			clear(kn.Key)
			clear(kn.Nonce)
		}
	}
}

// Marshal encodes t's full state, so that a restored tree never hands out
// a key twice.
func (t *Tree) Marshal(w *tlscodec.Writer) {
	w.Uint32(t.leaves)
	w.Uint32(t.limits.MaxForward)
	w.Uint32(uint32(t.limits.Window))
	ids := slices.Sorted(maps.Keys(t.nodes))
	w.Vector(func(w *tlscodec.Writer) {
		for _, x := range ids {
			w.Uint32(uint32(x))
			w.Opaque(t.nodes[x])
		}
	})
	rids := slices.SortedFunc(maps.Keys(t.ratchets), func(a, b ratchetID) int {
		if a.leaf != b.leaf {
			return int(a.leaf) - int(b.leaf)
		}
		return int(a.kind) - int(b.kind)
	})
	w.Vector(func(w *tlscodec.Writer) {
		for _, id := range rids {
			r := t.ratchets[id]
			w.Uint32(uint32(id.leaf))
			w.Uint8(uint8(id.kind))
			w.Opaque(r.secret)
			w.Uint32(r.next)
			w.Bool(r.exhausted)
			w.Vector(func(w *tlscodec.Writer) {
				for _, g := range r.skipOrder {
					if kn, ok := r.skipped[g]; ok {
						w.Uint32(g)
						w.Opaque(kn.Key)
						w.Opaque(kn.Nonce)
					}
				}
			})
		}
	})
}

// Read decodes a tree written by Marshal for suite s.
func Read(r *tlscodec.Reader, s *suite.Suite) *Tree {
	t := &Tree{suite: s, nodes: map[treemath.NodeIndex][]byte{}, ratchets: map[ratchetID]*ratchet{}}
	t.leaves = r.Uint32()
	t.limits.MaxForward = r.Uint32()
	t.limits.Window = int(r.Uint32())
	if r.Err() == nil && (t.leaves == 0 || t.leaves&(t.leaves-1) != 0 || t.limits.Window > 1<<16) {
		r.Fail(fmt.Errorf("%w: secret tree of %d leaves, window %d", tlscodec.ErrInvalid, t.leaves, t.limits.Window))
		return t
	}
	width := treemath.Width(t.leaves)
	r.Each(1<<21, func(r *tlscodec.Reader) {
		x := r.Uint32()
		secret := r.Opaque()
		if x >= width {
			r.Fail(fmt.Errorf("%w: secret tree node %d", tlscodec.ErrInvalid, x))
		}
		t.nodes[treemath.NodeIndex(x)] = slices.Clone(secret)
	})
	r.Each(1<<21, func(r *tlscodec.Reader) {
		id := ratchetID{leaf: treemath.LeafIndex(r.Uint32()), kind: ContentKind(r.Uint8())}
		rt := &ratchet{secret: slices.Clone(r.Opaque()), next: r.Uint32(), exhausted: r.Bool()}
		if uint32(id.leaf) >= t.leaves || (id.kind != Handshake && id.kind != Application) {
			r.Fail(fmt.Errorf("%w: ratchet of leaf %d kind %d", tlscodec.ErrInvalid, id.leaf, id.kind))
		}
		r.Each(1<<16, func(r *tlscodec.Reader) {
			kn := &KeyNonce{Generation: r.Uint32(), Key: slices.Clone(r.Opaque()), Nonce: slices.Clone(r.Opaque())}
			if rt.skipped == nil {
				rt.skipped = map[uint32]*KeyNonce{}
			}
			rt.skipped[kn.Generation] = kn
			rt.skipOrder = append(rt.skipOrder, kn.Generation)
		})
		t.ratchets[id] = rt
	})
	return t
}
