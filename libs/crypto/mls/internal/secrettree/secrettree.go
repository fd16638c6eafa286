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
	"slices"

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
	kn := t.derive(&r.secret, g)
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

// Open passes the key and nonce of leaf l at generation g to open, for
// receiving, and consumes the generation only if open returns nil: a message
// that fails to authenticate (a copy altered by the Delivery Service or on
// the path, or a forgery) leaves the tree as it was, so the genuine message
// still opens (RFC 9420, Section 9.2: a key is deleted once used to decrypt
// a message). On success the generation's key is erased, and generations
// skipped on the way to g are kept, up to the window, for late messages.
// Each generation opens successfully at most once. open must not keep kn.
func (t *Tree) Open(l treemath.LeafIndex, kind ContentKind, g uint32, open func(kn *KeyNonce) error) error {
	if uint32(l) >= t.leaves {
		return fmt.Errorf("%w: leaf %d of %d", ErrLeafOutOfRange, l, t.leaves)
	}
	r, installed := t.ratchets[ratchetID{l, kind}]
	if !installed {
		// First message from this leaf: derive its ratchet without touching
		// the tree, which keeps the path's secrets until open succeeds.
		secret, err := t.peekRatchetSecret(l, kind)
		if err != nil {
			return err
		}
		r = &ratchet{secret: secret}
		defer clear(secret)
	}
	if g < r.next || r.exhausted {
		kn, ok := r.skipped[g]
		if !ok {
			return fmt.Errorf("%w: leaf %d generation %d", ErrGenerationUsed, l, g)
		}
		if err := open(kn); err != nil {
			return err
		}
		delete(r.skipped, g)
		clear(kn.Key)
		clear(kn.Nonce)
		return nil
	}
	if g-r.next > t.limits.MaxForward {
		return fmt.Errorf("%w: leaf %d generation %d, ratchet at %d", ErrGenerationTooFar, l, g, r.next)
	}
	// Walk a copy of the ratchet to g, keeping the last window of skipped
	// keys; r itself moves only once open succeeds.
	secret := slices.Clone(r.secret)
	var skipped []*KeyNonce
	for gen := r.next; gen < g; gen++ {
		kn := t.derive(&secret, gen)
		if t.limits.Window <= 0 {
			erase(kn)
			continue
		}
		if len(skipped) == t.limits.Window {
			erase(skipped[0])
			skipped = skipped[1:]
		}
		skipped = append(skipped, kn)
	}
	kn := t.derive(&secret, g)
	err := open(kn)
	erase(kn)
	if err != nil {
		clear(secret)
		for _, s := range skipped {
			erase(s)
		}
		return err
	}
	if !installed {
		if r, err = t.ratchet(l, kind); err != nil {
			return err
		}
	}
	clear(r.secret)
	r.secret = secret
	if g == ^uint32(0) {
		r.exhausted = true
	} else {
		r.next = g + 1
	}
	for _, s := range skipped {
		t.keep(r, s)
	}
	return nil
}

// Get returns the key and nonce of leaf l at generation g and consumes the
// generation at once, authenticated or not. It is for test vectors and
// tests; messages are opened with Open.
func (t *Tree) Get(l treemath.LeafIndex, kind ContentKind, g uint32) (*KeyNonce, error) {
	var out *KeyNonce
	err := t.Open(l, kind, g, func(kn *KeyNonce) error {
		out = &KeyNonce{Generation: kn.Generation, Key: slices.Clone(kn.Key), Nonce: slices.Clone(kn.Nonce)}
		return nil
	})
	return out, err
}

// derive returns the key and nonce of generation g from *secret, the
// ratchet secret of that generation, and replaces *secret with the next
// generation's, erasing the old one.
func (t *Tree) derive(secret *[]byte, g uint32) *KeyNonce {
	kn := &KeyNonce{
		Generation: g,
		Key:        t.suite.DeriveTreeSecret(*secret, "key", g, t.suite.KeySize()),
		Nonce:      t.suite.DeriveTreeSecret(*secret, "nonce", g, t.suite.NonceSize()),
	}
	next := t.suite.DeriveTreeSecret(*secret, "secret", g, t.suite.HashSize())
	clear(*secret)
	*secret = next
	return kn
}

func erase(kn *KeyNonce) {
	clear(kn.Key)
	clear(kn.Nonce)
}

// peekRatchetSecret derives the first secret of leaf l's ratchet of the
// given kind from the nearest stored ancestor, storing nothing.
func (t *Tree) peekRatchetSecret(l treemath.LeafIndex, kind ContentKind) ([]byte, error) {
	x := l.Node()
	root := treemath.Root(t.leaves)
	path := []treemath.NodeIndex{x}
	for {
		if _, ok := t.nodes[path[len(path)-1]]; ok {
			break
		}
		if path[len(path)-1] == root {
			return nil, fmt.Errorf("%w: leaf %d secret already consumed", ErrGenerationUsed, l)
		}
		path = append(path, path[len(path)-1].Parent())
	}
	secret := slices.Clone(t.nodes[path[len(path)-1]])
	for i := len(path) - 1; i > 0; i-- {
		side := []byte("left")
		if path[i-1] == path[i].Right() {
			side = []byte("right")
		}
		child := t.suite.ExpandWithLabel(secret, "tree", side, t.suite.HashSize())
		clear(secret)
		secret = child
	}
	label := "handshake"
	if kind == Application {
		label = "application"
	}
	out := t.suite.ExpandWithLabel(secret, label, nil, t.suite.HashSize())
	clear(secret)
	return out, nil
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
