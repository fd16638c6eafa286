package mls

import (
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// resumptionPSK names g's current resumption PSK for the given use in a
// group of another suite possibly: the nonce has the Nh of the group whose
// key schedule uses it (RFC 9420, Section 8.4), nonceSize.
func (g *Group) resumptionPSK(usage wire.ResumptionPSKUsage, nonceSize int) (wire.PreSharedKeyID, error) {
	nonce, err := randomBytes(nonceSize)
	if err != nil {
		return wire.PreSharedKeyID{}, err
	}
	return wire.PreSharedKeyID{Type: wire.PSKResumption, Usage: usage, PSKGroupID: g.gc.GroupID, PSKEpoch: g.gc.Epoch, Nonce: nonce}, nil
}

// SubgroupOptions says how Branch and ReInit create the new group.
type SubgroupOptions struct {
	// Extensions are the new group's GroupContext extensions (Branch
	// only; a reinitialized group has those its ReInit proposal names).
	Extensions []Extension
	// UpdatePath makes the creating commit carry an UpdatePath.
	UpdatePath bool
	// ExternalTree leaves the ratchet tree out of the Welcome: joiners
	// then need the creator's RatchetTree in JoinOptions.
	ExternalTree bool
}

// newGroupResuming creates a group for id whose first commit adds
// keyPackages and injects the current resumption PSK of from, then merges
// it. The Welcome tells joiners to resume from the same group. The new
// group checks credentials with from's validator.
func newGroupResuming(from *Group, usage wire.ResumptionPSKUsage, id *Identity, newGroupID []byte, keyPackages [][]byte, opts *SubgroupOptions) (*Group, []byte, error) {
	if opts == nil {
		opts = &SubgroupOptions{}
	}
	psk, err := from.resumptionPSK(usage, id.suite.HashSize())
	if err != nil {
		return nil, nil, err
	}
	g, err := NewGroup(id, newGroupID, from.validateCredential)
	if err != nil {
		return nil, nil, err
	}
	// The new group has the extensions the ReInit proposal names, or
	// those the branch asks for (RFC 9420, Section 11.3). Epoch 0 is never
	// seen by others, so its context can change before the first commit.
	exts := toWireExtensions(opts.Extensions)
	if usage == wire.ResumptionReInit {
		exts = from.reinit.Extensions
	}
	if len(exts) > 0 {
		if err := supportsExtensions(g.tree.Leaf(g.me), exts); err != nil {
			return nil, nil, err
		}
		g.gc.Extensions = exts
		g.gcBytes = wire.Encode(&g.gc)
	}
	g.SetTrustedExternalSenders(from.trustedExternal)
	g.resumeFrom = []*Group{from}
	res, err := g.commit(CommitOptions{Add: keyPackages, InlineTree: !opts.ExternalTree, UpdatePath: opts.UpdatePath}, []wire.PreSharedKeyID{psk}, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := g.MergePendingCommit(); err != nil {
		return nil, nil, err
	}
	return g, res.Welcome, nil
}

// Branch creates a subgroup of some of g's members (RFC 9420, Section
// 11.3): a new group newGroupID, created by id, with the extensions opts
// names (nil opts: none, tree in the Welcome), that adds the given
// KeyPackages and binds itself to g's current epoch with a branch
// resumption PSK. Joiners pass g in JoinOptions.ResumeFrom.
func (g *Group) Branch(id *Identity, newGroupID []byte, keyPackages [][]byte, opts *SubgroupOptions) (*Group, []byte, error) {
	if g.removed {
		return nil, nil, ErrRemoved
	}
	return newGroupResuming(g, wire.ResumptionBranch, id, newGroupID, keyPackages, opts)
}

// CommitReInit commits a ReInit proposal (RFC 9420, Section 11.2): once
// merged or processed, g is closed and its members continue in a new group
// with the given id and cipher suite, created with ReInit.
func (g *Group) CommitReInit(newGroupID []byte, cs CipherSuite) (*CommitResult, error) {
	return g.commit(CommitOptions{}, nil, &wire.ReInit{
		GroupID: newGroupID, Version: wire.ProtocolVersion10, CipherSuite: uint16(cs), Extensions: g.gc.Extensions,
	})
}

// ReInit creates the group that replaces g after its ReInit commit: id
// must be in the new cipher suite, and keyPackages (in that suite) add the
// other members, who pass g in JoinOptions.ResumeFrom. The new group's
// extensions are the ReInit's (PendingReInit); opts.Extensions must be
// empty.
func (g *Group) ReInit(id *Identity, keyPackages [][]byte, opts *SubgroupOptions) (*Group, []byte, error) {
	if g.reinit == nil {
		return nil, nil, ErrNotReInitialized
	}
	if opts != nil && opts.Extensions != nil {
		return nil, nil, fmt.Errorf("%w: a reinitialized group takes the ReInit's extensions", ErrBadProposal)
	}
	if uint16(id.suite.ID()) != g.reinit.CipherSuite {
		return nil, nil, fmt.Errorf("%w: identity suite %d, reinit suite %d", ErrNoMatchingKeyPackage, id.suite.ID(), g.reinit.CipherSuite)
	}
	return newGroupResuming(g, wire.ResumptionReInit, id, g.reinit.GroupID, keyPackages, opts)
}
