package mls

import (
	"fmt"
	"slices"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/framing"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/keysched"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// pendingCommit is a commit this member sent and has not merged yet.
type pendingCommit struct {
	next *Group
}

// CommitOptions says what a commit does. Proposals received in the current
// epoch are always included by reference.
type CommitOptions struct {
	// Add holds KeyPackages (MLSMessage bytes) of members to add.
	Add [][]byte
	// Remove holds leaf indices of members to remove.
	Remove []uint32
	// ExternalPSKs holds ids of external PSKs (already stored with
	// AddExternalPSK) to inject into the key schedule.
	ExternalPSKs [][]byte
	// ResumptionEpochs names earlier epochs of this group whose resumption
	// PSKs to inject (the group keeps the last eight).
	ResumptionEpochs []uint64
	// UpdatePath forces an UpdatePath, refreshing the committer's leaf and
	// path keys; one is added anyway when the proposals require it.
	UpdatePath bool
	// InlineTree puts the ratchet tree in the Welcome's GroupInfo, so that
	// joiners need not fetch it.
	InlineTree bool
	// GroupContextExtensions, when not nil, replaces the group's
	// GroupContext extensions by a GroupContextExtensions proposal in the
	// commit (RFC 9420, Section 12.1.7); an empty non-nil slice removes
	// them all. nil leaves them unchanged.
	GroupContextExtensions []Extension
}

// CommitResult is what a commit produces: the commit message for the
// Delivery Service and, when members were added, their Welcome.
type CommitResult struct {
	Commit  []byte
	Welcome []byte
}

// Commit creates a commit for the current epoch and keeps the resulting
// state pending: call MergePendingCommit once the Delivery Service accepts
// the commit, or DiscardPendingCommit if another commit won the epoch.
func (g *Group) Commit(opts CommitOptions) (*CommitResult, error) {
	return g.commit(opts, nil, nil)
}

// commit is Commit with extra proposals by value: resumption PSKs of a
// branch or reinitialized group, or a ReInit.
func (g *Group) commit(opts CommitOptions, resumption []wire.PreSharedKeyID, reinit *wire.ReInit) (*CommitResult, error) {
	if g.removed {
		return nil, ErrRemoved
	}
	if g.reinit != nil {
		return nil, ErrReInitialized
	}
	committer := wire.Sender{Type: wire.SenderMember, Index: uint32(g.me)}
	var props []resolvedProposal
	var refs []wire.ProposalOrRef
	for _, cp := range g.proposals {
		props = append(props, resolvedProposal{p: cp.p, sender: cp.sender})
		refs = append(refs, wire.ProposalOrRef{Reference: cp.ref})
	}
	byValue := func(p *wire.Proposal) {
		props = append(props, resolvedProposal{p: p, sender: committer})
		refs = append(refs, wire.ProposalOrRef{Proposal: p})
	}
	for _, r := range opts.Remove {
		byValue(&wire.Proposal{Type: wire.ProposalRemove, Removed: r})
	}
	for _, b := range opts.Add {
		kp, err := parseKeyPackage(g.s, b)
		if err != nil {
			return nil, err
		}
		byValue(&wire.Proposal{Type: wire.ProposalAdd, KeyPackage: kp})
	}
	for _, id := range opts.ExternalPSKs {
		nonce, err := randomBytes(g.s.HashSize())
		if err != nil {
			return nil, err
		}
		byValue(&wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: &wire.PreSharedKeyID{Type: wire.PSKExternal, PSKID: slices.Clone(id), Nonce: nonce}})
	}
	for _, ep := range opts.ResumptionEpochs {
		nonce, err := randomBytes(g.s.HashSize())
		if err != nil {
			return nil, err
		}
		byValue(&wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: &wire.PreSharedKeyID{
			Type: wire.PSKResumption, Usage: wire.ResumptionApplication, PSKGroupID: g.gc.GroupID, PSKEpoch: ep, Nonce: nonce,
		}})
	}
	for i := range resumption {
		byValue(&wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: &resumption[i]})
	}
	if opts.GroupContextExtensions != nil {
		exts := toWireExtensions(opts.GroupContextExtensions)
		if err := g.checkExtensionsFit(exts); err != nil {
			return nil, err
		}
		byValue(&wire.Proposal{Type: wire.ProposalGroupContextExtensions, Extensions: exts})
	}
	if reinit != nil {
		byValue(&wire.Proposal{Type: wire.ProposalReInit, ReInit: reinit})
	}
	st, err := g.stage(props, committer)
	if err != nil {
		return nil, err
	}
	next := st.next
	next.gc.Epoch = g.gc.Epoch + 1
	next.privs = g.stagedPrivs(next)
	commitSecret := make([]byte, g.s.HashSize())
	var path *wire.UpdatePath
	var secrets *tree.PathSecrets
	if st.pathRequired || opts.UpdatePath {
		leaf := *g.tree.Leaf(g.me)
		gcFor := func(treeHash []byte) []byte {
			gc := next.gc
			gc.TreeHash = treeHash
			return wire.Encode(&gc)
		}
		path, secrets, err = next.tree.CreateUpdatePath(g.me, &leaf, g.sigPriv, g.gc.GroupID, st.added, gcFor)
		if err != nil {
			return nil, err
		}
		next.tree.PrunePrivateKeys(next.privs)
		for x, k := range secrets.PrivateKeys {
			next.privs[x] = k
		}
		commitSecret = secrets.CommitSecret
	}
	next.gc.TreeHash = next.tree.TreeHash()

	wf := wire.WirePublicMessage
	if g.PrivateHandshake {
		wf = wire.WirePrivateMessage
	}
	fc := &wire.FramedContent{
		GroupID: g.gc.GroupID, Epoch: g.gc.Epoch, Sender: committer,
		ContentType: wire.ContentCommit, Commit: &wire.Commit{Proposals: refs, Path: path},
	}
	ac, err := framing.Sign(g.s, wf, fc, g.sigPriv, g.gcBytes)
	if err != nil {
		return nil, err
	}
	var tag []byte
	if next, err = g.finishCommit(next, st, ac, commitSecret, nil, &tag); err != nil {
		return nil, err
	}
	msg := &wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wf}
	if wf == wire.WirePublicMessage {
		msg.PublicMessage, err = framing.ProtectPublic(g.s, ac, g.epoch.MembershipKey, g.gcBytes)
	} else {
		msg.PrivateMessage, err = framing.ProtectPrivate(g.s, ac, g.secrets, g.epoch.SenderDataSecret, 0)
	}
	if err != nil {
		return nil, err
	}
	res := &CommitResult{Commit: wire.Encode(msg)}
	if len(st.added) > 0 {
		if res.Welcome, err = next.welcome(st, props, secrets, tag, opts.InlineTree); err != nil {
			return nil, err
		}
	}
	g.pending = &pendingCommit{next: next}
	return res, nil
}

// welcome builds the Welcome for the members a commit added; g is the state
// after the commit.
func (g *Group) welcome(st *staged, props []resolvedProposal, secrets *tree.PathSecrets, tag []byte, inlineTree bool) ([]byte, error) {
	gi := &wire.GroupInfo{GroupContext: g.gc, ConfirmationTag: tag, Signer: uint32(g.me)}
	if inlineTree {
		gi.Extensions = append(gi.Extensions, wire.Extension{Type: wire.ExtRatchetTree, Data: wire.Encode(g.tree.ToWire())})
	}
	sig, err := g.s.SignWithLabel(g.sigPriv, groupInfoLabel, gi.TBS())
	if err != nil {
		return nil, fmt.Errorf("sign group info: %w", err)
	}
	gi.Signature = sig
	key, nonce := keysched.WelcomeKeyNonce(g.s, g.epoch.WelcomeSecret)
	encGI, err := g.s.Seal(key, nonce, nil, wire.Encode(gi))
	if err != nil {
		return nil, err
	}
	w := &wire.Welcome{CipherSuite: uint16(g.s.ID()), EncryptedGroupInfo: encGI}
	i := 0
	for _, rp := range props {
		if rp.p.Type != wire.ProposalAdd {
			continue
		}
		l := st.added[i]
		i++
		gs := &wire.GroupSecrets{JoinerSecret: g.epoch.JoinerSecret, PSKs: st.psks}
		if secrets != nil {
			gs.PathSecret = secrets.NodeSecrets[treemath.CommonAncestor(g.me.Node(), l.Node())]
		}
		kem, ct, err := g.s.EncryptWithLabel(rp.p.KeyPackage.InitKey, welcomeLabel, encGI, wire.Encode(gs))
		if err != nil {
			return nil, fmt.Errorf("encrypt group secrets: %w", err)
		}
		w.Secrets = append(w.Secrets, wire.EncryptedGroupSecrets{
			NewMember: keyPackageRef(g.s, rp.p.KeyPackage),
			Secrets:   wire.HPKECiphertext{KEMOutput: kem, Ciphertext: ct},
		})
	}
	return wire.Encode(&wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wire.WireWelcome, Welcome: w}), nil
}

// MergePendingCommit moves the group to the epoch of the commit it sent.
func (g *Group) MergePendingCommit() error {
	if g.pending == nil {
		return ErrNoPendingCommit
	}
	g.adopt(g.pending.next)
	return nil
}

// DiscardPendingCommit drops a commit the Delivery Service refused; the
// group stays in its epoch and can process the winning commit.
func (g *Group) DiscardPendingCommit() { g.pending = nil }

// RatchetTree returns the encoded ratchet tree, for joiners of a Welcome
// sent without InlineTree.
func (g *Group) RatchetTree() []byte { return wire.Encode(g.tree.ToWire()) }
