// Package secrettree is the MLS secret tree and its per-sender hash ratchets
// ([RFC 9420, Section 9]): it turns an epoch's encryption_secret into the
// handshake and application keys and nonces of every member, derives the
// sender-data key and nonce, and bounds how far ahead and how far out of
// order a receiver will go.
//
// Node secrets are derived lazily and erased once both children exist, and
// each generation's key is erased once used, so that a compromise later in
// the epoch does not reveal earlier messages.
//
// [RFC 9420, Section 9]: https://www.rfc-editor.org/rfc/rfc9420#section-9
package secrettree

import (
	"errors"
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
)

// Errors returned (wrapped) by this package. Test for them with errors.Is.
var (
	// ErrLeafOutOfRange means a leaf index beyond the tree.
	ErrLeafOutOfRange = errors.New("mls: sender leaf out of range")
	// ErrGenerationTooFar means a generation more than MaxForward ahead of
	// the ratchet: a receiver will not compute that many keys on demand.
	ErrGenerationTooFar = errors.New("mls: generation too far ahead")
	// ErrGenerationUsed means the key for a generation was already used or
	// fell out of the out-of-order window: a replay or a very late message.
	ErrGenerationUsed = errors.New("mls: generation already used or expired")
	// ErrGenerationExhausted means a sender ratchet reached 2^32 - 1.
	ErrGenerationExhausted = errors.New("mls: generation counter exhausted")
)

// ContentKind selects one of a leaf's two ratchets.
type ContentKind int

// The two ratchets of each leaf.
const (
	Handshake ContentKind = iota
	Application
)

// Limits bounds the work and memory a receiver spends on one sender.
type Limits struct {
	// MaxForward is how many generations past the ratchet head a message may
	// claim; the keys in between are derived and kept.
	MaxForward uint32
	// Window is how many skipped keys per ratchet are kept for messages that
	// arrive out of order.
	Window int
}

// DefaultLimits match common deployments: a thousand messages of loss and
// a window of 32 reordered messages.
var DefaultLimits = Limits{MaxForward: 1000, Window: 32}

// KeyNonce is one generation's AEAD key and nonce. It is incomparable.
type KeyNonce struct {
	_          [0]func()
	Generation uint32
	Key        []byte
	Nonce      []byte
}

// Tree is one epoch's secret tree. It is not safe for concurrent use.
type Tree struct {
	suite    *suite.Suite
	leaves   uint32
	limits   Limits
	nodes    map[treemath.NodeIndex][]byte
	ratchets map[ratchetID]*ratchet
}

type ratchetID struct {
	leaf treemath.LeafIndex
	kind ContentKind
}

type ratchet struct {
	secret    []byte // secret of generation next
	next      uint32
	exhausted bool
	skipped   map[uint32]*KeyNonce
	skipOrder []uint32
}

// New returns the secret tree of an epoch with the given number of leaves.
func New(s *suite.Suite, encryptionSecret []byte, leaves uint32, limits Limits) *Tree {
	root := treemath.Root(leaves)
	return &Tree{
		suite:    s,
		leaves:   leaves,
		limits:   limits,
		nodes:    map[treemath.NodeIndex][]byte{root: append([]byte{}, encryptionSecret...)},
		ratchets: map[ratchetID]*ratchet{},
	}
}

// leafSecret derives the secret of leaf l, consuming the path from the
// nearest stored ancestor.
func (t *Tree) leafSecret(l treemath.LeafIndex) ([]byte, error) {
	x := l.Node()
	// Find the lowest ancestor (or x itself) whose secret is stored.
	path := []treemath.NodeIndex{x}
	root := treemath.Root(t.leaves)
	for {
		if _, ok := t.nodes[path[len(path)-1]]; ok {
			break
		}
		if path[len(path)-1] == root {
			return nil, fmt.Errorf("%w: leaf %d secret already consumed", ErrGenerationUsed, l)
		}
		path = append(path, path[len(path)-1].Parent())
	}
	for i := len(path) - 1; i > 0; i-- {
		p := path[i]
		secret := t.nodes[p]
		left := t.suite.ExpandWithLabel(secret, "tree", []byte("left"), t.suite.HashSize())
		right := t.suite.ExpandWithLabel(secret, "tree", []byte("right"), t.suite.HashSize())
		t.nodes[p.Left()], t.nodes[p.Right()] = left, right
		clear(secret)
		delete(t.nodes, p)
	}
	s := t.nodes[x]
	delete(t.nodes, x)
	return s, nil
}

func (t *Tree) ratchet(l treemath.LeafIndex, kind ContentKind) (*ratchet, error) {
	if uint32(l) >= t.leaves {
		return nil, fmt.Errorf("%w: leaf %d of %d", ErrLeafOutOfRange, l, t.leaves)
	}
	id := ratchetID{l, kind}
	if r, ok := t.ratchets[id]; ok {
		return r, nil
	}
	leaf, err := t.leafSecret(l)
	if err != nil {
		return nil, err
	}
	// Both ratchets of a leaf come from its secret, so derive both now and
	// erase the leaf secret.
	h := t.suite.HashSize()
	t.ratchets[ratchetID{l, Handshake}] = &ratchet{secret: t.suite.ExpandWithLabel(leaf, "handshake", nil, h)}
	t.ratchets[ratchetID{l, Application}] = &ratchet{secret: t.suite.ExpandWithLabel(leaf, "application", nil, h)}
	clear(leaf)
	return t.ratchets[id], nil
}

// advance returns the key and nonce of r's head generation and moves the
// head one step.
func (t *Tree) advance(r *ratchet) (*KeyNonce, error) {
	if r.exhausted {
		return nil, ErrGenerationExhausted
	}
	g := r.next
	kn := &KeyNonce{
		Generation: g,
		Key:        t.suite.DeriveTreeSecret(r.secret, "key", g, t.suite.KeySize()),
		Nonce:      t.suite.DeriveTreeSecret(r.secret, "nonce", g, t.suite.NonceSize()),
	}
	next := t.suite.DeriveTreeSecret(r.secret, "secret", g, t.suite.HashSize())
	clear(r.secret)
	r.secret = next
	if g == ^uint32(0) {
		r.exhausted = true
	} else {
		r.next++
	}
	return kn, nil
}

// Next returns the key and nonce of leaf l's next generation, for sending.
func (t *Tree) Next(l treemath.LeafIndex, kind ContentKind) (*KeyNonce, error) {
	r, err := t.ratchet(l, kind)
	if err != nil {
		return nil, err
	}
	return t.advance(r)
}

// Get returns the key and nonce of leaf l at generation g, for receiving.
// Each generation is returned at most once. Generations skipped on the way
// to g are kept, up to the window, for late messages.
func (t *Tree) Get(l treemath.LeafIndex, kind ContentKind, g uint32) (*KeyNonce, error) {
	r, err := t.ratchet(l, kind)
	if err != nil {
		return nil, err
	}
	if g < r.next || r.exhausted {
		kn, ok := r.skipped[g]
		if !ok {
			return nil, fmt.Errorf("%w: leaf %d generation %d", ErrGenerationUsed, l, g)
		}
		delete(r.skipped, g)
		return kn, nil
	}
	if g-r.next > t.limits.MaxForward {
		return nil, fmt.Errorf("%w: leaf %d generation %d, ratchet at %d", ErrGenerationTooFar, l, g, r.next)
	}
	for r.next < g {
		kn, err := t.advance(r)
		if err != nil {
			return nil, err
		}
		t.keep(r, kn)
	}
	return t.advance(r)
}

// keep stores a skipped key, evicting the oldest beyond the window.
func (t *Tree) keep(r *ratchet, kn *KeyNonce) {
	if t.limits.Window <= 0 {
		return
	}
	if r.skipped == nil {
		r.skipped = map[uint32]*KeyNonce{}
	}
	r.skipped[kn.Generation] = kn
	r.skipOrder = append(r.skipOrder, kn.Generation)
	for len(r.skipOrder) > t.limits.Window {
		old := r.skipOrder[0]
		r.skipOrder = r.skipOrder[1:]
		if k, ok := r.skipped[old]; ok {
			clear(k.Key)
			delete(r.skipped, old)
		}
	}
}

// SenderDataKeyNonce derives the key and nonce that protect a
// PrivateMessage's sender data from the first Nh bytes of its ciphertext.
func SenderDataKeyNonce(s *suite.Suite, senderDataSecret, ciphertext []byte) (key, nonce []byte) {
	sample := ciphertext
	if len(sample) > s.HashSize() {
		sample = sample[:s.HashSize()]
	}
	return s.ExpandWithLabel(senderDataSecret, "key", sample, s.KeySize()),
		s.ExpandWithLabel(senderDataSecret, "nonce", sample, s.NonceSize())
}
