// Package mlskeystest is a stand-in MLS group for testing package mlskeys
// until the MLS library exists: its exporter is MLS-Exporter of
// [RFC 9420, Section 8.5], computed from a given exporter secret.
//
// [RFC 9420, Section 8.5]: https://www.rfc-editor.org/rfc/rfc9420#section-8.5
package mlskeystest

import (
	"crypto"
	"crypto/hkdf"
	"errors"
	"fmt"
	"math"
	"sync"

	// The hash functions MLS cipher suites use must be linked in for
	// crypto.Hash.New.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Group is one member's view of one MLS epoch: what mlskeys.Group asks for.
type Group struct {
	hash           crypto.Hash
	exporterSecret []byte
	epoch          uint64
	leafIndex      uint32
	leafCount      uint32
}

// NewGroup returns the epoch whose exporter_secret is exporterSecret, seen by
// the member at leafIndex of a tree of leafCount leaves. hash is the KDF hash
// of the MLS cipher suite (SHA-256 for suite 1).
func NewGroup(hash crypto.Hash, exporterSecret []byte, epoch uint64, leafIndex, leafCount uint32) *Group {
	return &Group{hash: hash, exporterSecret: exporterSecret, epoch: epoch, leafIndex: leafIndex, leafCount: leafCount}
}

// Epoch returns the epoch number.
func (g *Group) Epoch() uint64 { return g.epoch }

// LeafIndex returns the member's own leaf index.
func (g *Group) LeafIndex() uint32 { return g.leafIndex }

// LeafCount returns the number of leaves in the ratchet tree.
func (g *Group) LeafCount() uint32 { return g.leafCount }

// Export is MLS-Exporter(label, context, length):
//
//	ExpandWithLabel(DeriveSecret(exporter_secret, label), "exported", Hash(context), length)
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	h := g.hash.New()
	h.Write(context)
	derived, err := expandWithLabel(g.hash, g.exporterSecret, label, nil, g.hash.Size())
	if err != nil {
		return nil, err
	}
	return expandWithLabel(g.hash, derived, "exported", h.Sum(nil), length)
}

// Advance returns the next epoch of the same group as seen by the member at
// leafIndex of leafCount leaves. Its exporter secret is a fresh derivation
// from this one: a test device, not the MLS key schedule.
func (g *Group) Advance(leafIndex, leafCount uint32) (*Group, error) {
	next, err := expandWithLabel(g.hash, g.exporterSecret, "mlskeystest next epoch", nil, g.hash.Size())
	if err != nil {
		return nil, err
	}
	return NewGroup(g.hash, next, g.epoch+1, leafIndex, leafCount), nil
}

// As returns the same epoch seen by the member at another leaf.
func (g *Group) As(leafIndex uint32) *Group {
	return NewGroup(g.hash, g.exporterSecret, g.epoch, leafIndex, g.leafCount)
}

// expandWithLabel is ExpandWithLabel of RFC 9420, Section 8: KDF.Expand with
// the KDFLabel struct {uint16 length; opaque label<V> = "MLS 1.0 " + label;
// opaque context<V>} as info.
func expandWithLabel(hash crypto.Hash, secret []byte, label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > 0xffff {
		return nil, fmt.Errorf("mlskeystest: length %d does not fit a uint16", length)
	}
	info := []byte{byte(length >> 8), byte(length)}
	var err error
	if info, err = appendVector(info, []byte("MLS 1.0 "+label)); err != nil {
		return nil, err
	}
	if info, err = appendVector(info, context); err != nil {
		return nil, err
	}
	return hkdf.Expand(hash.New, secret, string(info), length)
}

// appendVector appends v with the variable-length size prefix of RFC 9420,
// Section 2.1.2 (1, 2 or 4 bytes, top two bits giving the size).
func appendVector(dst, v []byte) ([]byte, error) {
	n := len(v)
	switch {
	case n < 1<<6:
		dst = append(dst, byte(n))
	case n < 1<<14:
		dst = append(dst, 0x40|byte(n>>8), byte(n))
	case n < 1<<30:
		dst = append(dst, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		return nil, errors.New("mlskeystest: vector too long")
	}
	return append(dst, v...), nil
}

// CounterStore is an mlskeys.CounterStore in memory: keyrings sharing one
// see each other's reservations, as keyrings of one member sharing a
// persisted store do across restarts. It is safe for concurrent use.
type CounterStore struct {
	mu     sync.Mutex
	floors map[[2]uint64]uint64
}

// NewCounterStore returns an empty store.
func NewCounterStore() *CounterStore {
	return &CounterStore{floors: make(map[[2]uint64]uint64)}
}

// Reserve raises the floor of (epoch, kid) by n and returns the old one.
func (s *CounterStore) Reserve(epoch, kid, n uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := [2]uint64{epoch, kid}
	floor := s.floors[key]
	if floor > math.MaxUint64-n {
		s.floors[key] = math.MaxUint64
	} else {
		s.floors[key] = floor + n
	}
	return floor, nil
}
