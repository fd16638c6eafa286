package mls

import (
	"fmt"
	"maps"
	"slices"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/keysched"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

func decodeExternalSenders(b []byte) ([]externalSender, error) {
	var out []externalSender
	r := tlscodec.NewReader(b)
	r.Each(1<<16, func(r *tlscodec.Reader) {
		key := r.Opaque()
		cred, err := wire.ReadCredential(r)
		if err != nil {
			r.Fail(err)
			return
		}
		out = append(out, externalSender{SignatureKey: key, Credential: cred})
	})
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: external senders: %w", wire.ErrMalformed, err)
	}
	return out, nil
}

// resolvedProposal is a proposal with its sender, ready to apply.
type resolvedProposal struct {
	p      *wire.Proposal
	sender wire.Sender
}

// staged is the group after a commit's proposals are applied, before the
// key schedule runs.
type staged struct {
	next         *Group
	added        []treemath.LeafIndex
	psks         []wire.PreSharedKeyID
	externalInit []byte
	pathRequired bool
}

// stage copies g and applies proposals in the order of RFC 9420, Section
// 12.3, validating them (Section 12.2) for a commit by committer.
func (g *Group) stage(props []resolvedProposal, committer wire.Sender) (*staged, error) {
	next := *g
	next.tree = g.tree.Clone()
	next.gc.Extensions = g.gc.Extensions
	st := &staged{next: &next, pathRequired: len(props) == 0}
	var gce, reinit, extInit int
	updated := map[treemath.LeafIndex]bool{}
	removed := map[treemath.LeafIndex]bool{}
	pskSeen := map[string]bool{}
	for _, rp := range props {
		if err := g.checkProposalBody(rp.p); err != nil {
			return nil, err
		}
		switch rp.p.Type {
		case wire.ProposalAdd, wire.ProposalPreSharedKey, wire.ProposalReInit:
		default:
			st.pathRequired = true
		}
		switch rp.p.Type {
		case wire.ProposalGroupContextExtensions:
			gce++
		case wire.ProposalReInit:
			reinit++
		case wire.ProposalExternalInit:
			extInit++
		}
	}
	if gce > 1 || (reinit > 0 && len(props) != 1) {
		return nil, fmt.Errorf("%w: %d group context extension and %d reinit proposals among %d", ErrInvalidProposals, gce, reinit, len(props))
	}
	if (committer.Type == wire.SenderNewMemberCommit) != (extInit == 1) || extInit > 1 {
		return nil, fmt.Errorf("%w: %d external init proposals in a commit from sender type %d", ErrInvalidProposals, extInit, committer.Type)
	}
	if committer.Type == wire.SenderNewMemberCommit {
		// An external commit carries its ExternalInit, at most one Remove
		// (of the joiner's old leaf) and PSKs, all by value (RFC 9420,
		// Section 12.2).
		removes := 0
		for _, rp := range props {
			switch {
			case rp.sender != committer:
				return nil, fmt.Errorf("%w: external commit with a proposal by reference", ErrInvalidProposals)
			case rp.p.Type == wire.ProposalRemove:
				removes++
			case rp.p.Type != wire.ProposalExternalInit && rp.p.Type != wire.ProposalPreSharedKey:
				return nil, fmt.Errorf("%w: proposal type %d in an external commit", ErrInvalidProposals, rp.p.Type)
			}
		}
		if removes > 1 {
			return nil, fmt.Errorf("%w: %d removals in an external commit", ErrInvalidProposals, removes)
		}
	}
	for _, rp := range props {
		if rp.p.Type == wire.ProposalGroupContextExtensions {
			next.gc.Extensions = rp.p.Extensions
		}
	}
	for _, rp := range props {
		if rp.p.Type != wire.ProposalUpdate {
			continue
		}
		l := treemath.LeafIndex(rp.sender.Index)
		if rp.sender.Type != wire.SenderMember || updated[l] || (committer.Type == wire.SenderMember && l == treemath.LeafIndex(committer.Index)) {
			return nil, fmt.Errorf("%w: update from leaf %d", ErrInvalidProposals, l)
		}
		if err := g.validateLeaf(rp.p.LeafNode, wire.SourceUpdate, uint32(l)); err != nil {
			return nil, err
		}
		if err := g.checkFreshEncryptionKey(rp.p.LeafNode, l); err != nil {
			return nil, err
		}
		if err := next.checkLeafFits(rp.p.LeafNode, l); err != nil {
			return nil, err
		}
		updated[l] = true
		if err := next.tree.Update(l, rp.p.LeafNode); err != nil {
			return nil, err
		}
	}
	for _, rp := range props {
		if rp.p.Type != wire.ProposalRemove {
			continue
		}
		l := treemath.LeafIndex(rp.p.Removed)
		if removed[l] || updated[l] || (committer.Type == wire.SenderMember && l == treemath.LeafIndex(committer.Index)) {
			return nil, fmt.Errorf("%w: removal of leaf %d", ErrInvalidProposals, l)
		}
		if err := next.tree.Remove(l); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidProposals, err)
		}
		removed[l] = true
		if l == g.me {
			next.removed = true
		}
	}
	for _, rp := range props {
		if rp.p.Type != wire.ProposalAdd {
			continue
		}
		kp := rp.p.KeyPackage
		if err := validateKeyPackage(g.s, kp); err != nil {
			return nil, err
		}
		if err := g.checkLifetime(kp); err != nil {
			return nil, err
		}
		if err := next.checkLeafFits(&kp.LeafNode, treemath.LeafIndex(^uint32(0))); err != nil {
			return nil, err
		}
		st.added = append(st.added, next.tree.Add(&kp.LeafNode))
	}
	for _, rp := range props {
		switch rp.p.Type {
		case wire.ProposalPreSharedKey:
			key := string(wire.Encode(rp.p.PSK))
			if pskSeen[key] {
				return nil, fmt.Errorf("%w: duplicate psk", ErrInvalidProposals)
			}
			pskSeen[key] = true
			st.psks = append(st.psks, *rp.p.PSK)
		case wire.ProposalExternalInit:
			st.externalInit = rp.p.KEMOutput
		case wire.ProposalReInit:
			next.reinit = rp.p.ReInit
		}
	}
	if gce > 0 {
		if err := g.checkTrustedExternalSenders(next.gc.Extensions); err != nil {
			return nil, err
		}
		var err error
		next.tree.Members(func(l treemath.LeafIndex, leaf *wire.LeafNode) {
			if err == nil {
				if e := supportsExtensions(leaf, next.gc.Extensions); e != nil {
					err = fmt.Errorf("%w: leaf %d: %w", ErrInvalidProposals, l, e)
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return st, nil
}

// checkProposalBody applies the rules of RFC 9420, Sections 12.1.4 and
// 12.1.5 that a PreSharedKey or ReInit proposal must meet on its own.
func (g *Group) checkProposalBody(p *wire.Proposal) error {
	switch p.Type {
	case wire.ProposalPreSharedKey:
		if len(p.PSK.Nonce) != g.s.HashSize() {
			return fmt.Errorf("%w: psk nonce of %d bytes, want %d", ErrInvalidProposals, len(p.PSK.Nonce), g.s.HashSize())
		}
		// Reinit and branch PSKs only bind a new group to its origin, in
		// the commit that creates it from epoch 0.
		if p.PSK.Type == wire.PSKResumption && p.PSK.Usage != wire.ResumptionApplication && g.gc.Epoch != 0 {
			return fmt.Errorf("%w: resumption psk of usage %d outside a group's creation", ErrInvalidProposals, p.PSK.Usage)
		}
	case wire.ProposalReInit:
		if p.ReInit.Version < g.gc.Version {
			return fmt.Errorf("%w: reinit to version %d below the group's %d", ErrInvalidProposals, p.ReInit.Version, g.gc.Version)
		}
	}
	return nil
}

// checkLeafFits rejects a leaf that may not join the group beside its
// current members (RFC 9420, Section 7.3): a refused credential, an
// encryption or signature key already used by another leaf than except, a
// credential type some member does not support or a member's credential type
// it does not support, an extension of its own it does not list, a
// lifetime longer than the group allows, or a missing capability the
// group's extensions demand.
func (g *Group) checkLeafFits(leaf *wire.LeafNode, except treemath.LeafIndex) error {
	if err := g.checkCredential(leaf); err != nil {
		return err
	}
	if err := listsOwnExtensions(leaf); err != nil {
		return err
	}
	if err := g.checkTotalLifetime(leaf); err != nil {
		return err
	}
	var err error
	g.tree.Members(func(l treemath.LeafIndex, other *wire.LeafNode) {
		if err != nil || l == except {
			return
		}
		switch {
		case string(other.EncryptionKey) == string(leaf.EncryptionKey) || string(other.SignatureKey) == string(leaf.SignatureKey):
			err = fmt.Errorf("%w: keys already used by leaf %d", ErrInvalidLeafNode, l)
		case !slices.Contains(other.Capabilities.Credentials, leaf.Credential.Type):
			err = fmt.Errorf("%w: credential type %d not supported by leaf %d", ErrInvalidLeafNode, leaf.Credential.Type, l)
		case !slices.Contains(leaf.Capabilities.Credentials, other.Credential.Type):
			err = fmt.Errorf("%w: does not support credential type %d of leaf %d", ErrInvalidLeafNode, other.Credential.Type, l)
		}
	})
	if err != nil {
		return err
	}
	return supportsExtensions(leaf, g.gc.Extensions)
}

// listsOwnExtensions checks that leaf's capabilities list every
// non-default extension the leaf itself carries (RFC 9420, Section 7.3).
func listsOwnExtensions(leaf *wire.LeafNode) error {
	for _, e := range leaf.Extensions {
		if mustBeListed(e.Type) && !slices.Contains(leaf.Capabilities.Extensions, e.Type) {
			return fmt.Errorf("%w: carries extension type %d its capabilities omit", ErrInvalidLeafNode, e.Type)
		}
	}
	return nil
}

// lastDefaultExtension is the highest of the default extension types 1 to
// 5, which capabilities never need to list (RFC 9420, Section 7.2).
const lastDefaultExtension = 5

// mustBeListed reports whether an extension a leaf or KeyPackage carries
// must appear in its capabilities: not the default types, and not the
// GREASE values 0x0A0A, 0x1A1A ... 0xEAEA (RFC 9420, Section 13.5), which
// receivers ignore as unknown and which interoperating clients add to
// KeyPackages without listing them.
func mustBeListed(t uint16) bool {
	grease := t < 0xf000 && t>>8 == t&0xff && t&0x0f == 0x0a
	return t > lastDefaultExtension && !grease
}

// validateTreeLeaves applies the LeafNode checks of RFC 9420, Section 7.3
// to every leaf of a tree received at join (Section 12.4.3.1) beyond the
// signatures: unique keys in the whole tree, credentials, extensions and
// capabilities against the group, credential types supported by every
// member, and total lifetimes within the group's bound. Whether a leaf's
// lifetime covers the present is not checked: Section 7.3 only RECOMMENDS
// it for a received tree, a member who never commits keeps its
// KeyPackage's lifetime in the tree for good (so the group would become
// unjoinable), and the official passive-client vectors hold trees whose
// leaf lifetimes no single clock satisfies together with the KeyPackages
// their commits add.
func (g *Group) validateTreeLeaves() error {
	if err := g.tree.CheckUniqueKeys(); err != nil {
		return err
	}
	// Each leaf supporting every credential type in use is the pairwise
	// condition of Section 7.3 for all members at once.
	var inUse []uint16
	g.tree.Members(func(_ treemath.LeafIndex, leaf *wire.LeafNode) {
		if !slices.Contains(inUse, leaf.Credential.Type) {
			inUse = append(inUse, leaf.Credential.Type)
		}
	})
	var err error
	g.tree.Members(func(l treemath.LeafIndex, leaf *wire.LeafNode) {
		if err != nil {
			return
		}
		for _, ct := range inUse {
			if !slices.Contains(leaf.Capabilities.Credentials, ct) {
				err = fmt.Errorf("%w: leaf %d does not support credential type %d in use", ErrInvalidLeafNode, l, ct)
				return
			}
		}
		for _, check := range []func() error{
			func() error { return g.checkCredential(leaf) },
			func() error { return listsOwnExtensions(leaf) },
			func() error { return supportsExtensions(leaf, g.gc.Extensions) },
			func() error { return g.checkTotalLifetime(leaf) },
		} {
			if e := check(); e != nil {
				err = fmt.Errorf("leaf %d: %w", l, e)
				return
			}
		}
	})
	return err
}

// supportsExtensions checks that leaf lists every non-default extension of
// the group and every capability required_capabilities demands.
func supportsExtensions(leaf *wire.LeafNode, exts []wire.Extension) error {
	for _, e := range exts {
		if e.Type > lastDefaultExtension && !slices.Contains(leaf.Capabilities.Extensions, e.Type) {
			return fmt.Errorf("%w: lacks group extension type %d", ErrInvalidLeafNode, e.Type)
		}
	}
	data, ok := wire.FindExtension(exts, wire.ExtRequiredCapabilities)
	if !ok {
		return nil
	}
	r := tlscodec.NewReader(data)
	var reqExts, props, creds []uint16
	for _, list := range []*[]uint16{&reqExts, &props, &creds} {
		r.Each(1<<16, func(r *tlscodec.Reader) { *list = append(*list, r.Uint16()) })
	}
	if err := r.Finish(); err != nil {
		return fmt.Errorf("%w: required_capabilities: %w", wire.ErrMalformed, err)
	}
	c := &leaf.Capabilities
	// Default types need not be listed: extensions 1 to 5 and proposals 1
	// to 7. Credential types have no defaults (Section 7.2).
	for _, need := range []struct {
		what       string
		want, in   []uint16
		maxDefault uint16
	}{{"extension", reqExts, c.Extensions, 5}, {"proposal", props, c.Proposals, 7}, {"credential", creds, c.Credentials, 0}} {
		for _, v := range need.want {
			if v > need.maxDefault && !slices.Contains(need.in, v) {
				return fmt.Errorf("%w: lacks required %s type %d", ErrInvalidLeafNode, need.what, v)
			}
		}
	}
	return nil
}

// validateLeaf checks a LeafNode from an Update proposal or a commit path.
func (g *Group) validateLeaf(leaf *wire.LeafNode, source wire.LeafNodeSource, l uint32) error {
	if leaf.Source != source {
		return fmt.Errorf("%w: leaf source %d, want %d", ErrInvalidLeafNode, leaf.Source, source)
	}
	if err := tree.VerifyLeafSignature(g.s, leaf, g.gc.GroupID, l); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidLeafNode, err)
	}
	return nil
}

// checkFreshEncryptionKey rejects a leaf replacing leaf l (by Update or
// commit path) with l's current encryption key (RFC 9420, Section 7.3).
func (g *Group) checkFreshEncryptionKey(leaf *wire.LeafNode, l treemath.LeafIndex) error {
	if old := g.tree.Leaf(l); old != nil && string(old.EncryptionKey) == string(leaf.EncryptionKey) {
		return fmt.Errorf("%w: leaf %d keeps its encryption key", ErrInvalidLeafNode, l)
	}
	return nil
}

// resolveProposals turns a commit's proposal list into proposals with
// senders.
func (g *Group) resolveProposals(c *wire.Commit, committer wire.Sender) ([]resolvedProposal, error) {
	out := make([]resolvedProposal, 0, len(c.Proposals))
	for _, por := range c.Proposals {
		if por.Proposal != nil {
			out = append(out, resolvedProposal{p: por.Proposal, sender: committer})
			continue
		}
		i := slices.IndexFunc(g.proposals, func(cp cachedProposal) bool { return string(cp.ref) == string(por.Reference) })
		if i < 0 {
			return nil, fmt.Errorf("%w: %x", ErrUnknownProposal, por.Reference)
		}
		out = append(out, resolvedProposal{p: g.proposals[i].p, sender: g.proposals[i].sender})
	}
	return out, nil
}

// pskSecret resolves PSK ids to secrets and chains them.
func (g *Group) pskSecret(ids []wire.PreSharedKeyID) ([]byte, error) {
	psks := make([]keysched.PSK, 0, len(ids))
	for _, id := range ids {
		var secret []byte
		switch id.Type {
		case wire.PSKExternal:
			secret = g.externalPSKs[string(id.PSKID)]
		case wire.PSKResumption:
			if string(id.PSKGroupID) == string(g.gc.GroupID) {
				secret = g.resumption[id.PSKEpoch]
			}
			for _, old := range g.resumeFrom {
				if secret == nil && string(id.PSKGroupID) == string(old.gc.GroupID) {
					secret = old.resumption[id.PSKEpoch]
				}
			}
		}
		if secret == nil {
			return nil, fmt.Errorf("%w: type %d id %x epoch %d", ErrUnknownPSK, id.Type, id.PSKID, id.PSKEpoch)
		}
		psks = append(psks, keysched.PSK{ID: id, Secret: secret})
	}
	return keysched.PSKSecret(g.s, psks)
}

// processCommit computes the state after a received commit.
func (g *Group) processCommit(ac *wire.AuthenticatedContent) (*Group, error) {
	c := ac.Content.Commit
	committer := ac.Content.Sender
	props, err := g.resolveProposals(c, committer)
	if err != nil {
		return nil, err
	}
	st, err := g.stage(props, committer)
	if err != nil {
		return nil, err
	}
	next := st.next
	if st.pathRequired && c.Path == nil {
		return nil, ErrPathRequired
	}
	if next.removed {
		// A removed member cannot decrypt the new epoch's path and has no
		// use for it: it keeps only the fact that it was removed.
		gone := *g
		gone.removed = true
		gone.pending = nil
		return &gone, nil
	}
	sender := treemath.LeafIndex(committer.Index)
	if committer.Type == wire.SenderNewMemberCommit {
		if c.Path == nil {
			return nil, ErrPathRequired
		}
		// A resync replaces the joiner's old leaf, so its new leaf meets
		// the rules of an Update of that leaf (RFC 9420, Section
		// 12.4.3.2); whether the credential may replace it is the
		// CredentialValidator's call.
		for _, rp := range props {
			if rp.p.Type == wire.ProposalRemove {
				if err := g.checkFreshEncryptionKey(&c.Path.LeafNode, treemath.LeafIndex(rp.p.Removed)); err != nil {
					return nil, err
				}
			}
		}
		sender = next.tree.Add(&c.Path.LeafNode)
	}
	next.gc.Epoch = g.gc.Epoch + 1
	commitSecret := make([]byte, g.s.HashSize())
	if c.Path != nil {
		if err := next.validateLeaf(&c.Path.LeafNode, wire.SourceCommit, uint32(sender)); err != nil {
			return nil, err
		}
		if committer.Type == wire.SenderMember {
			if err := next.checkFreshEncryptionKey(&c.Path.LeafNode, sender); err != nil {
				return nil, err
			}
		}
		if err := next.checkLeafFits(&c.Path.LeafNode, sender); err != nil {
			return nil, err
		}
		if err := next.tree.MergeUpdatePath(sender, c.Path); err != nil {
			return nil, err
		}
		next.gc.TreeHash = next.tree.TreeHash()
		provisional := wire.Encode(&next.gc)
		privs := g.stagedPrivs(next)
		ps, err := next.tree.DecryptUpdatePath(g.me, sender, c.Path, privs, st.added, provisional)
		if err != nil {
			return nil, err
		}
		for x, k := range ps.PrivateKeys {
			privs[x] = k
		}
		next.privs = privs
		commitSecret = ps.CommitSecret
	} else {
		next.privs = g.stagedPrivs(next)
	}
	next.gc.TreeHash = next.tree.TreeHash()
	return g.finishCommit(next, st, ac, commitSecret, nil, nil)
}

// finishCommit runs the transcript hash and key schedule for a staged
// commit and checks (or, when tagOut is set, computes) its confirmation tag.
// initSecret overrides the previous epoch's init_secret (external commits
// made by a joiner); nil means derive it.
func (g *Group) finishCommit(next *Group, st *staged, ac *wire.AuthenticatedContent, commitSecret, initSecret []byte, tagOut *[]byte) (*Group, error) {
	next.gc.ConfirmedTranscriptHash = keysched.ConfirmedTranscriptHash(g.s, g.interim, ac)
	next.gcBytes = wire.Encode(&next.gc)
	pskSecret, err := g.pskSecret(st.psks)
	if err != nil {
		return nil, err
	}
	switch {
	case initSecret != nil:
	case st.externalInit == nil:
		initSecret = g.epoch.InitSecret
	default:
		priv, _, err := keysched.ExternalPub(g.s, g.epoch.ExternalSecret)
		if err != nil {
			return nil, err
		}
		if initSecret, err = g.s.ExportReceiver(priv, st.externalInit, externalInitLabel, g.s.HashSize()); err != nil {
			return nil, fmt.Errorf("external init: %w", err)
		}
	}
	epoch := keysched.Next(g.s, initSecret, commitSecret, pskSecret, next.gcBytes)
	if tagOut != nil {
		*tagOut = keysched.ConfirmationTag(g.s, epoch.ConfirmationKey, next.gc.ConfirmedTranscriptHash)
		ac.Auth.ConfirmationTag = *tagOut
	} else if err := keysched.VerifyConfirmationTag(g.s, epoch.ConfirmationKey, next.gc.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag); err != nil {
		return nil, err
	}
	next.confTag = ac.Auth.ConfirmationTag
	next.interim = keysched.InterimTranscriptHash(g.s, next.gc.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag)
	next.resumption = maps.Clone(g.resumption)
	next.pending = nil
	next.installEpoch(epoch)
	return next, nil
}

// externalInitLabel is the HPKE exporter context of external commits.
const externalInitLabel = "MLS 1.0 external init secret"
