package mls

import (
	"fmt"
	"maps"
	"slices"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/keysched"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/secrettree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// stateVersion is the version of the MarshalState format. Unmarshal rejects
// any other.
const stateVersion = 1

// ErrBadState means bytes that are not a group state this version wrote.
var ErrBadState = fmt.Errorf("%w: group state", wire.ErrMalformed)

// clone returns a copy of the group state that shares no secret bytes with
// g (the pending commit is not copied): using one never changes the other.
// It is not exported: two copies that both send would reuse their sender
// keys and nonces. Tests fork a member with it.
func (g *Group) clone() *Group {
	c := *g
	c.tree = g.tree.Clone()
	c.sigPriv = slices.Clone(g.sigPriv)
	c.privs = cloneSecrets(g.privs)
	c.secrets = g.secrets.Clone()
	c.epoch = g.epoch.Clone()
	c.interim = slices.Clone(g.interim)
	c.confTag = slices.Clone(g.confTag)
	c.proposals = slices.Clone(g.proposals)
	c.externalPSKs = cloneSecrets(g.externalPSKs)
	c.resumption = cloneSecrets(g.resumption)
	c.updateKeys = cloneSecrets(g.updateKeys)
	c.pending = nil
	if g.previous != nil {
		c.previous = g.previous.clone()
	}
	return &c
}

// cloneSecrets copies a map of secrets, values included.
func cloneSecrets[K comparable](m map[K][]byte) map[K][]byte {
	if m == nil {
		return nil
	}
	c := make(map[K][]byte, len(m))
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return c
}

// MarshalState encodes the group state, secrets included, for storage on
// the member's device. A pending commit is not included: commit again
// after a restore.
func (g *Group) MarshalState() ([]byte, error) {
	w := tlscodec.NewWriter(nil)
	w.Uint16(stateVersion)
	w.Uint16(uint16(g.s.ID()))
	g.gc.Marshal(w)
	w.Opaque(wire.Encode(g.tree.ToWire()))
	w.Uint32(uint32(g.me))
	w.Opaque(g.sigPriv)
	w.Vector(func(w *tlscodec.Writer) {
		for _, x := range slices.Sorted(maps.Keys(g.privs)) {
			w.Uint32(uint32(x))
			w.Opaque(g.privs[x])
		}
	})
	e := g.epoch
	for _, s := range [][]byte{e.SenderDataSecret, e.ExporterSecret, e.ExternalSecret, e.ConfirmationKey,
		e.MembershipKey, e.ResumptionPSK, e.EpochAuthenticator, e.InitSecret, g.interim, g.confTag} {
		w.Opaque(s)
	}
	g.secrets.Marshal(w)
	w.Vector(func(w *tlscodec.Writer) {
		for _, p := range g.proposals {
			w.Opaque(p.ref)
			p.sender.Marshal(w)
			p.p.Marshal(w)
		}
	})
	w.Vector(func(w *tlscodec.Writer) {
		for _, id := range slices.Sorted(maps.Keys(g.externalPSKs)) {
			w.Opaque([]byte(id))
			w.Opaque(g.externalPSKs[id])
		}
	})
	w.Vector(func(w *tlscodec.Writer) {
		for _, ep := range slices.Sorted(maps.Keys(g.resumption)) {
			w.Uint64(ep)
			w.Opaque(g.resumption[ep])
		}
	})
	w.Bool(g.removed)
	w.Bool(g.PrivateHandshake)
	w.Bool(g.reinit != nil)
	if g.reinit != nil {
		(&wire.Proposal{Type: wire.ProposalReInit, ReInit: g.reinit}).MarshalBody(w)
	}
	return w.Bytes(), nil
}

// UnmarshalState restores a group from MarshalState output. validate
// checks the credential of every member that enters the group from now on;
// it must not be nil (a function is not part of the stored state, and a
// restored group must not admit members unchecked).
func UnmarshalState(b []byte, validate CredentialValidator) (*Group, error) {
	if validate == nil {
		return nil, ErrNoCredentialValidator
	}
	r := tlscodec.NewReader(b)
	if v := r.Uint16(); r.Err() == nil && v != stateVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadState, v)
	}
	s, err := suite.New(suite.ID(r.Uint16()))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	g := &Group{s: s, privs: map[treemath.NodeIndex][]byte{}, externalPSKs: map[string][]byte{}, resumption: map[uint64][]byte{}, validateCredential: validate}
	gc, err := wire.ReadGroupContext(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	g.gc = *gc
	treeBytes := r.Opaque()
	g.me = treemath.LeafIndex(r.Uint32())
	g.sigPriv = slices.Clone(r.Opaque())
	r.Each(1<<21, func(r *tlscodec.Reader) {
		x := treemath.NodeIndex(r.Uint32())
		g.privs[x] = slices.Clone(r.Opaque())
	})
	e := &keysched.Epoch{}
	for _, p := range []*[]byte{&e.SenderDataSecret, &e.ExporterSecret, &e.ExternalSecret, &e.ConfirmationKey,
		&e.MembershipKey, &e.ResumptionPSK, &e.EpochAuthenticator, &e.InitSecret, &g.interim, &g.confTag} {
		*p = slices.Clone(r.Opaque())
	}
	g.epoch = e
	g.secrets = secrettree.Read(r, s)
	r.Each(1<<16, func(r *tlscodec.Reader) {
		ref := slices.Clone(r.Opaque())
		sender, p, err := wire.ReadSenderProposal(r)
		if err != nil {
			r.Fail(err)
			return
		}
		g.proposals = append(g.proposals, cachedProposal{ref: ref, p: p, sender: sender})
	})
	r.Each(1<<16, func(r *tlscodec.Reader) {
		id := string(r.Opaque())
		g.externalPSKs[id] = slices.Clone(r.Opaque())
	})
	r.Each(1<<16, func(r *tlscodec.Reader) {
		ep := r.Uint64()
		g.resumption[ep] = slices.Clone(r.Opaque())
	})
	g.removed = r.Bool()
	g.PrivateHandshake = r.Bool()
	if r.Bool() {
		g.reinit, _ = wire.ReadReInit(r)
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	rt, err := wire.DecodeRatchetTree(treeBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	if g.tree, err = tree.FromWire(s, rt); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	if string(g.tree.TreeHash()) != string(g.gc.TreeHash) || g.tree.Leaf(g.me) == nil && !g.removed {
		return nil, fmt.Errorf("%w: tree does not match the group context", ErrBadState)
	}
	g.gcBytes = wire.Encode(&g.gc)
	return g, nil
}
