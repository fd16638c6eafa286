package mls

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// twoMemberGroup returns a group of two P-256 members as seen by the
// creator, and the second member's key package.
// trustAll is the Authentication Service of tests whose members are all
// trusted.
func trustAll(uint16, []byte, [][]byte, []byte) error { return nil }

func twoMemberGroup(t *testing.T) (*Group, *KeyPackage) {
	t.Helper()
	a, err := NewIdentity(P256AES128GCMSHA256P256, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGroup(a, []byte("g"), trustAll)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewIdentity(P256AES128GCMSHA256P256, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := b.NewKeyPackage(0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Commit(CommitOptions{Add: [][]byte{kp.Bytes()}}); err != nil {
		t.Fatal(err)
	}
	if err := g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	return g, kp
}

// craftedKeyPackage returns a key package for a fresh identity whose leaf
// is changed by edit before both signatures are made.
func craftedKeyPackage(t *testing.T, edit func(*wire.LeafNode)) []byte {
	t.Helper()
	id, err := NewIdentity(P256AES128GCMSHA256P256, []byte("crafted"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := id.NewKeyPackage(0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	edit(&kp.kp.LeafNode)
	if err := tree.SignLeaf(id.suite, &kp.kp.LeafNode, id.sigPriv, nil, 0); err != nil {
		t.Fatal(err)
	}
	if kp.kp.Signature, err = id.suite.SignWithLabel(id.sigPriv, keyPackageLabel, kp.kp.TBS()); err != nil {
		t.Fatal(err)
	}
	return kp.Bytes()
}

func TestAddRejectsIncompatibleLeaves(t *testing.T) {
	g, _ := twoMemberGroup(t)
	cases := []struct {
		name string
		edit func(*wire.LeafNode)
	}{
		{"credential type the members do not support", func(l *wire.LeafNode) {
			l.Credential = wire.Credential{Type: wire.CredentialX509, Certificates: [][]byte{{1}}}
			l.Capabilities.Credentials = []uint16{wire.CredentialBasic, wire.CredentialX509}
		}},
		{"does not support the members' credential type", func(l *wire.LeafNode) {
			l.Capabilities.Credentials = []uint16{wire.CredentialX509}
		}},
		{"own extension not in its capabilities", func(l *wire.LeafNode) {
			l.Extensions = []wire.Extension{{Type: 0xff00, Data: []byte{}}}
		}},
	}
	for _, c := range cases {
		kp := craftedKeyPackage(t, c.edit)
		if _, err := g.Commit(CommitOptions{Add: [][]byte{kp}}); !errors.Is(err, ErrInvalidLeafNode) {
			t.Errorf("%s: %v, want ErrInvalidLeafNode", c.name, err)
		}
	}
	listed := craftedKeyPackage(t, func(l *wire.LeafNode) {
		l.Extensions = []wire.Extension{{Type: 0xff00, Data: []byte{}}}
		l.Capabilities.Extensions = []uint16{0xff00}
	})
	if _, err := g.Commit(CommitOptions{Add: [][]byte{listed}}); err != nil {
		t.Errorf("listed own extension: %v", err)
	}
}

func TestExternalSenderProposalTypes(t *testing.T) {
	g, _ := twoMemberGroup(t)
	leaf := *g.tree.Leaf(1)
	leaf.Source = wire.SourceUpdate
	for _, c := range []struct {
		p    *wire.Proposal
		want error
	}{
		{&wire.Proposal{Type: wire.ProposalUpdate, LeafNode: &leaf}, ErrInvalidProposals},
		{&wire.Proposal{Type: wire.ProposalExternalInit, KEMOutput: []byte{1}}, ErrInvalidProposals},
		{&wire.Proposal{Type: wire.ProposalRemove, Removed: 1}, nil},
	} {
		ac := &wire.AuthenticatedContent{WireFormat: wire.WirePublicMessage, Content: wire.FramedContent{
			GroupID: g.gc.GroupID, Epoch: g.gc.Epoch, Sender: wire.Sender{Type: wire.SenderExternal},
			ContentType: wire.ContentProposal, Proposal: c.p,
		}}
		if err := g.storeProposal(ac); !errors.Is(err, c.want) {
			t.Errorf("external proposal type %d: %v, want %v", c.p.Type, err, c.want)
		}
	}
}

func TestUpdateMustChangeEncryptionKey(t *testing.T) {
	g, kp := twoMemberGroup(t)
	leaf := *g.tree.Leaf(1)
	leaf.Source = wire.SourceUpdate
	if err := tree.SignLeaf(g.s, &leaf, kp.identity.sigPriv, g.gc.GroupID, 1); err != nil {
		t.Fatal(err)
	}
	update := resolvedProposal{p: &wire.Proposal{Type: wire.ProposalUpdate, LeafNode: &leaf}, sender: wire.Sender{Type: wire.SenderMember, Index: 1}}
	if _, err := g.stage([]resolvedProposal{update}, wire.Sender{Type: wire.SenderMember, Index: 0}); !errors.Is(err, ErrInvalidLeafNode) {
		t.Errorf("update keeping the encryption key: %v, want ErrInvalidLeafNode", err)
	}
	_, leaf.EncryptionKey, _ = freshHPKEKey(g.s)
	if err := tree.SignLeaf(g.s, &leaf, kp.identity.sigPriv, g.gc.GroupID, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := g.stage([]resolvedProposal{update}, wire.Sender{Type: wire.SenderMember, Index: 0}); err != nil {
		t.Errorf("update with a fresh key: %v", err)
	}
}

// TestJoinedTreeLeafChecks edits a tree the way a malicious committer could
// (signatures are checked separately) and runs a joiner's leaf checks.
func TestJoinedTreeLeafChecks(t *testing.T) {
	g, _ := twoMemberGroup(t)
	if err := g.validateTreeLeaves(); err != nil {
		t.Fatalf("valid tree: %v", err)
	}
	cases := []struct {
		name string
		edit func(*wire.LeafNode)
		want error
	}{
		{"credential type in use unsupported", func(l *wire.LeafNode) { l.Capabilities.Credentials = []uint16{wire.CredentialX509} }, ErrInvalidLeafNode},
		{"own extension unlisted", func(l *wire.LeafNode) { l.Extensions = []wire.Extension{{Type: 0xff01, Data: []byte{}}} }, ErrInvalidLeafNode},
		{"signature key reused", func(l *wire.LeafNode) { l.SignatureKey = g.tree.Leaf(0).SignatureKey }, tree.ErrDuplicateKey},
		{"encryption key reused", func(l *wire.LeafNode) { l.EncryptionKey = g.tree.Leaf(0).EncryptionKey }, tree.ErrDuplicateKey},
	}
	for _, c := range cases {
		bad := g.clone()
		leaf := *bad.tree.Leaf(1)
		c.edit(&leaf)
		if err := bad.tree.Update(treemath.LeafIndex(1), &leaf); err != nil {
			t.Fatal(err)
		}
		if err := bad.validateTreeLeaves(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestPreviousEpochSecretsErased(t *testing.T) {
	g, _ := twoMemberGroup(t)
	now := time.Unix(5000, 0)
	g.SetClock(func() time.Time { return now })
	if _, err := g.Commit(CommitOptions{UpdatePath: true}); err != nil {
		t.Fatal(err)
	}
	if err := g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	p := g.previous
	if p == nil || p.epoch != g.gc.Epoch-1 || !p.expires.Equal(now.Add(DefaultPreviousEpochRetention)) {
		t.Fatalf("previous epoch state %+v after a commit at %v", p, now)
	}
	senderData := p.senderDataSecret
	now = p.expires
	// Any private message makes the group notice the expiry.
	if _, _, err := g.openPrevious(&wire.PrivateMessage{Epoch: p.epoch, ContentType: wire.ContentApplication}); err != nil || g.previous != nil {
		t.Fatalf("expired window: %v, state %v", err, g.previous)
	}
	if !bytes.Equal(senderData, make([]byte, len(senderData))) {
		t.Error("sender data secret of the expired epoch not erased")
	}

	if _, err := g.Commit(CommitOptions{UpdatePath: true}); err != nil {
		t.Fatal(err)
	}
	if err := g.MergePendingCommit(); err != nil || g.previous == nil {
		t.Fatalf("second commit: %v, window %v", err, g.previous)
	}
	senderData = g.previous.senderDataSecret
	g.SetPreviousEpochRetention(0)
	if g.previous != nil || !bytes.Equal(senderData, make([]byte, len(senderData))) {
		t.Error("disabling the window kept the previous epoch's secrets")
	}
}

// requiredCapabilities encodes a required_capabilities extension.
func requiredCapabilities(exts, proposals, credentials []uint16) wire.Extension {
	w := tlscodec.NewWriter(nil)
	for _, list := range [][]uint16{exts, proposals, credentials} {
		w.Vector(func(w *tlscodec.Writer) {
			for _, v := range list {
				w.Uint16(v)
			}
		})
	}
	return wire.Extension{Type: wire.ExtRequiredCapabilities, Data: w.Bytes()}
}

func TestProposalListRules(t *testing.T) {
	g, _ := twoMemberGroup(t)
	member := wire.Sender{Type: wire.SenderMember, Index: 0}
	joiner := wire.Sender{Type: wire.SenderNewMemberCommit}
	by := func(sender wire.Sender, ps ...*wire.Proposal) []resolvedProposal {
		out := make([]resolvedProposal, len(ps))
		for i, p := range ps {
			out[i] = resolvedProposal{p: p, sender: sender}
		}
		return out
	}
	gce := func(exts ...wire.Extension) *wire.Proposal {
		return &wire.Proposal{Type: wire.ProposalGroupContextExtensions, Extensions: exts}
	}
	psk := &wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: &wire.PreSharedKeyID{Type: wire.PSKExternal, PSKID: []byte("p"), Nonce: make([]byte, 32)}}
	extInit := &wire.Proposal{Type: wire.ProposalExternalInit, KEMOutput: []byte{1}}
	remove := &wire.Proposal{Type: wire.ProposalRemove, Removed: 1}
	reinit := &wire.Proposal{Type: wire.ProposalReInit, ReInit: &wire.ReInit{GroupID: []byte("h"), Version: wire.ProtocolVersion10, CipherSuite: g.gc.CipherSuite}}
	cases := []struct {
		name      string
		props     []resolvedProposal
		committer wire.Sender
	}{
		{"two group context extensions", by(member, gce(), gce()), member},
		{"reinit with another proposal", by(member, reinit, psk), member},
		{"external init from a member", by(member, extInit), member},
		{"duplicate psk", by(member, psk, psk), member},
		{"external commit without external init", by(joiner, psk), joiner},
		{"external commit with an add", append(by(joiner, extInit), by(joiner, &wire.Proposal{Type: wire.ProposalAdd})...), joiner},
		{"external commit with two removes", by(joiner, extInit, remove, remove), joiner},
		{"external commit with a proposal by reference", append(by(joiner, extInit), by(member, psk)...), joiner},
		{"extension a member does not support", by(member, gce(wire.Extension{Type: 0xff02, Data: []byte{}})), member},
		{"required extension a member lacks", by(member, gce(requiredCapabilities([]uint16{0xff02}, nil, nil))), member},
		{"required proposal type a member lacks", by(member, gce(requiredCapabilities(nil, []uint16{0xff03}, nil))), member},
		{"required credential type a member lacks", by(member, gce(requiredCapabilities(nil, nil, []uint16{wire.CredentialX509}))), member},
	}
	for _, c := range cases {
		if _, err := g.stage(c.props, c.committer); !errors.Is(err, ErrInvalidProposals) {
			t.Errorf("%s: %v, want ErrInvalidProposals", c.name, err)
		}
	}
	for _, ok := range []struct {
		name      string
		props     []resolvedProposal
		committer wire.Sender
	}{
		{"external commit replacing the joiner's old leaf", by(joiner, extInit, remove, psk), joiner},
		{"required capabilities every member has", by(member, gce(requiredCapabilities(nil, nil, []uint16{wire.CredentialBasic}))), member},
	} {
		if _, err := g.stage(ok.props, ok.committer); err != nil {
			t.Errorf("%s: %v", ok.name, err)
		}
	}
}

func TestPSKAndReInitProposalRules(t *testing.T) {
	g, _ := twoMemberGroup(t)
	member := wire.Sender{Type: wire.SenderMember, Index: 0}
	nonce := make([]byte, g.s.HashSize())
	cases := []struct {
		name string
		p    *wire.Proposal
	}{
		{"short psk nonce", &wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: &wire.PreSharedKeyID{Type: wire.PSKExternal, PSKID: []byte("p"), Nonce: nonce[1:]}}},
		{"reinit psk in a running group", &wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: &wire.PreSharedKeyID{
			Type: wire.PSKResumption, Usage: wire.ResumptionReInit, PSKGroupID: g.gc.GroupID, PSKEpoch: 0, Nonce: nonce}}},
		{"branch psk in a running group", &wire.Proposal{Type: wire.ProposalPreSharedKey, PSK: &wire.PreSharedKeyID{
			Type: wire.PSKResumption, Usage: wire.ResumptionBranch, PSKGroupID: g.gc.GroupID, PSKEpoch: 0, Nonce: nonce}}},
		{"reinit to an older version", &wire.Proposal{Type: wire.ProposalReInit, ReInit: &wire.ReInit{GroupID: []byte("h"), Version: 0, CipherSuite: g.gc.CipherSuite}}},
	}
	for _, c := range cases {
		if _, err := g.stage([]resolvedProposal{{p: c.p, sender: member}}, member); !errors.Is(err, ErrInvalidProposals) {
			t.Errorf("%s in a commit: %v, want ErrInvalidProposals", c.name, err)
		}
		ac := &wire.AuthenticatedContent{Content: wire.FramedContent{Sender: member, ContentType: wire.ContentProposal, Proposal: c.p}}
		if err := g.storeProposal(ac); !errors.Is(err, ErrInvalidProposals) {
			t.Errorf("%s received: %v, want ErrInvalidProposals", c.name, err)
		}
	}
}

func TestWelcomeResumptionRules(t *testing.T) {
	old, _ := twoMemberGroup(t)
	old.reinit = &wire.ReInit{GroupID: []byte("new"), Version: wire.ProtocolVersion10, CipherSuite: old.gc.CipherSuite}
	reinitPSK := wire.PreSharedKeyID{Type: wire.PSKResumption, Usage: wire.ResumptionReInit, PSKGroupID: old.gc.GroupID, PSKEpoch: old.gc.Epoch}
	branchPSK := reinitPSK
	branchPSK.Usage = wire.ResumptionBranch
	joined := func(edit func(*wire.GroupContext)) *Group {
		gc := wire.GroupContext{Version: wire.ProtocolVersion10, CipherSuite: old.gc.CipherSuite, GroupID: []byte("new"), Epoch: 1}
		edit(&gc)
		return &Group{gc: gc, resumeFrom: []*Group{old}}
	}
	same := func(*wire.GroupContext) {}
	if err := joined(same).checkResumption([]wire.PreSharedKeyID{reinitPSK}); err != nil {
		t.Errorf("matching reinit: %v", err)
	}
	if err := joined(same).checkResumption([]wire.PreSharedKeyID{branchPSK}); err != nil {
		t.Errorf("matching branch: %v", err)
	}
	staleEpoch := reinitPSK
	staleEpoch.PSKEpoch--
	cases := []struct {
		name string
		g    *Group
		psks []wire.PreSharedKeyID
	}{
		{"two resumption psks", joined(same), []wire.PreSharedKeyID{reinitPSK, branchPSK}},
		{"new group not in epoch 1", joined(func(gc *wire.GroupContext) { gc.Epoch = 2 }), []wire.PreSharedKeyID{reinitPSK}},
		{"reinit to another group id", joined(func(gc *wire.GroupContext) { gc.GroupID = []byte("other") }), []wire.PreSharedKeyID{reinitPSK}},
		{"reinit to another suite", joined(func(gc *wire.GroupContext) { gc.CipherSuite = 1 }), []wire.PreSharedKeyID{reinitPSK}},
		{"reinit with other extensions", joined(func(gc *wire.GroupContext) {
			gc.Extensions = []wire.Extension{{Type: wire.ExtExternalSenders, Data: []byte{0}}}
		}), []wire.PreSharedKeyID{reinitPSK}},
		{"reinit psk of an epoch before the reinit", joined(same), []wire.PreSharedKeyID{staleEpoch}},
		{"branch to another suite", joined(func(gc *wire.GroupContext) { gc.CipherSuite = 1 }), []wire.PreSharedKeyID{branchPSK}},
	}
	for _, c := range cases {
		if err := c.g.checkResumption(c.psks); !errors.Is(err, ErrBadResumption) {
			t.Errorf("%s: %v, want ErrBadResumption", c.name, err)
		}
	}
	old.reinit = nil
	if err := joined(same).checkResumption([]wire.PreSharedKeyID{reinitPSK}); !errors.Is(err, ErrBadResumption) {
		t.Errorf("reinit psk of a group without reinit: %v, want ErrBadResumption", err)
	}
}

// TestValidateTreeReportsEveryFailure checks that verifying leaf signatures
// alongside the hashes loses neither kind of failure.
func TestValidateTreeReportsEveryFailure(t *testing.T) {
	g, _ := twoMemberGroup(t)
	if err := g.validateTree(); err != nil {
		t.Fatalf("valid tree: %v", err)
	}
	bad := g.clone()
	leaf := *bad.tree.Leaf(1)
	leaf.Signature = bytes.Clone(leaf.Signature)
	leaf.Signature[len(leaf.Signature)-1] ^= 1
	if err := bad.tree.Update(1, &leaf); err != nil {
		t.Fatal(err)
	}
	if err := bad.validateTree(); !errors.Is(err, ErrTreeHash) {
		t.Errorf("tampered leaf, stale tree hash: %v, want ErrTreeHash", err)
	}
	bad.gc.TreeHash = bad.tree.TreeHash()
	if err := bad.validateTree(); !errors.Is(err, tree.ErrLeafSignature) {
		t.Errorf("tampered leaf signature, matching tree hash: %v, want ErrLeafSignature", err)
	}
}

func TestResyncLeafMustChangeEncryptionKey(t *testing.T) {
	g, _ := twoMemberGroup(t)
	joiner := wire.Sender{Type: wire.SenderNewMemberCommit}
	old := *g.tree.Leaf(1)
	commit := func(encKey []byte) *wire.AuthenticatedContent {
		leaf := old
		leaf.Source = wire.SourceCommit
		leaf.EncryptionKey = encKey
		return &wire.AuthenticatedContent{WireFormat: wire.WirePublicMessage, Content: wire.FramedContent{
			GroupID: g.gc.GroupID, Epoch: g.gc.Epoch, Sender: joiner, ContentType: wire.ContentCommit,
			Commit: &wire.Commit{Proposals: []wire.ProposalOrRef{
				{Proposal: &wire.Proposal{Type: wire.ProposalExternalInit, KEMOutput: []byte{1}}},
				{Proposal: &wire.Proposal{Type: wire.ProposalRemove, Removed: 1}},
			}, Path: &wire.UpdatePath{LeafNode: leaf}},
		}}
	}
	if _, err := g.processCommit(commit(old.EncryptionKey)); !errors.Is(err, ErrInvalidLeafNode) {
		t.Errorf("resync keeping the removed leaf's encryption key: %v, want ErrInvalidLeafNode", err)
	}
	_, fresh, _ := freshHPKEKey(g.s)
	// With a fresh key the commit gets past this rule and fails later, on
	// the leaf signature this test does not make.
	if _, err := g.processCommit(commit(fresh)); errors.Is(err, ErrInvalidLeafNode) && !errors.Is(err, tree.ErrLeafSignature) {
		t.Errorf("resync with a fresh key: %v", err)
	}
}

func TestMaxLeafLifetime(t *testing.T) {
	g, _ := twoMemberGroup(t)
	yearLong := craftedKeyPackage(t, func(l *wire.LeafNode) { l.NotBefore, l.NotAfter = 0, 365*24*3600 })
	g.SetClock(func() time.Time { return time.Unix(1000, 0) })
	if _, err := g.Commit(CommitOptions{Add: [][]byte{yearLong}}); err != nil {
		t.Fatalf("no bound: %v", err)
	}
	g.DiscardPendingCommit()
	g.SetMaxLeafLifetime(90 * 24 * time.Hour)
	if _, err := g.Commit(CommitOptions{Add: [][]byte{yearLong}}); !errors.Is(err, ErrInvalidLeafNode) {
		t.Errorf("year-long key package under a 90-day bound: %v, want ErrInvalidLeafNode", err)
	}
	inverted := &wire.LeafNode{Source: wire.SourceKeyPackage, NotBefore: 2000, NotAfter: 500}
	if err := g.checkTotalLifetime(inverted); !errors.Is(err, ErrInvalidLeafNode) {
		t.Errorf("lifetime ending before it starts: %v, want ErrInvalidLeafNode", err)
	}
	// A joined tree is held to the same bound: leaf 1 was added with a
	// lifetime of 2^62 seconds.
	if err := g.validateTreeLeaves(); !errors.Is(err, ErrInvalidLeafNode) {
		t.Errorf("joined tree with an unbounded key package leaf: %v, want ErrInvalidLeafNode", err)
	}
	g.SetMaxLeafLifetime(0)
	if err := g.validateTreeLeaves(); err != nil {
		t.Errorf("bound removed: %v", err)
	}
}

func TestRemovalErasesPreviousEpoch(t *testing.T) {
	a, err := NewIdentity(P256AES128GCMSHA256P256, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	ga, err := NewGroup(a, []byte("g"), trustAll)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewIdentity(P256AES128GCMSHA256P256, []byte("b"))
	kp, err := b.NewKeyPackage(0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	commitAndDeliver := func(opts CommitOptions, to *Group) *CommitResult {
		t.Helper()
		res, err := ga.Commit(opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := ga.MergePendingCommit(); err != nil {
			t.Fatal(err)
		}
		if to != nil {
			if _, err := to.Process(res.Commit); err != nil {
				t.Fatal(err)
			}
		}
		return res
	}
	res := commitAndDeliver(CommitOptions{Add: [][]byte{kp.Bytes()}, InlineTree: true}, nil)
	gb, err := Join(kp, res.Welcome, trustAll, nil)
	if err != nil {
		t.Fatal(err)
	}
	commitAndDeliver(CommitOptions{UpdatePath: true}, gb)
	if gb.previous == nil {
		t.Fatal("no previous-epoch window after a commit")
	}
	senderData := gb.previous.senderDataSecret
	commitAndDeliver(CommitOptions{Remove: []uint32{1}}, gb)
	if !gb.removed || gb.previous != nil || !bytes.Equal(senderData, make([]byte, len(senderData))) {
		t.Errorf("removed member kept its previous-epoch window (removed %v, window %v)", gb.removed, gb.previous)
	}
}

func TestKeyPackageExtensionsListed(t *testing.T) {
	id, err := NewIdentity(P256AES128GCMSHA256P256, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := id.NewKeyPackage(0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	sign := func() {
		var err error
		if kp.kp.Signature, err = id.suite.SignWithLabel(id.sigPriv, keyPackageLabel, kp.kp.TBS()); err != nil {
			t.Fatal(err)
		}
	}
	kp.kp.Extensions = []wire.Extension{{Type: 0xff04, Data: []byte{}}}
	sign()
	if err := validateKeyPackage(id.suite, &kp.kp); !errors.Is(err, ErrInvalidKeyPackage) {
		t.Errorf("unlisted key package extension: %v, want ErrInvalidKeyPackage", err)
	}
	kp.kp.LeafNode.Capabilities.Extensions = []uint16{0xff04}
	if err := tree.SignLeaf(id.suite, &kp.kp.LeafNode, id.sigPriv, nil, 0); err != nil {
		t.Fatal(err)
	}
	sign()
	if err := validateKeyPackage(id.suite, &kp.kp); err != nil {
		t.Errorf("listed key package extension: %v", err)
	}
}

func TestGREASEExtensionsNeedNotBeListed(t *testing.T) {
	for _, v := range []uint16{0x0a0a, 0x1a1a, 0x7a7a, 0xeaea} {
		if mustBeListed(v) {
			t.Errorf("GREASE value %#04x must be listed", v)
		}
	}
	for _, v := range []uint16{0x0006, 0x0a0b, 0x1a2a, 0xff04, 0xfafa} {
		if !mustBeListed(v) {
			t.Errorf("extension type %#04x need not be listed", v)
		}
	}
	for v := uint16(1); v <= lastDefaultExtension; v++ {
		if mustBeListed(v) {
			t.Errorf("default extension type %d must be listed", v)
		}
	}
}

// TestJoinNeedsIdenticalOwnLeaf has the committer add a variant of the
// joiner's KeyPackage (same keys, other capabilities) and points the
// Welcome at the original: the joiner must not adopt a leaf that differs
// from the one it published.
func TestJoinNeedsIdenticalOwnLeaf(t *testing.T) {
	a, _ := NewIdentity(P256AES128GCMSHA256P256, []byte("a"))
	g, err := NewGroup(a, []byte("g"), trustAll)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewIdentity(P256AES128GCMSHA256P256, []byte("b"))
	kp, err := b.NewKeyPackage(0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	variant := kp.kp
	variant.LeafNode.Capabilities.Extensions = []uint16{0xff05}
	if err := tree.SignLeaf(b.suite, &variant.LeafNode, b.sigPriv, nil, 0); err != nil {
		t.Fatal(err)
	}
	if variant.Signature, err = b.suite.SignWithLabel(b.sigPriv, keyPackageLabel, variant.TBS()); err != nil {
		t.Fatal(err)
	}
	variantMsg := wire.Encode(&wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wire.WireKeyPackage, KeyPackage: &variant})
	res, err := g.Commit(CommitOptions{Add: [][]byte{variantMsg}, InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.DecodeMLSMessage(res.Welcome)
	if err != nil {
		t.Fatal(err)
	}
	// The group secrets are encrypted to the init key both share; only
	// the reference names the variant.
	m.Welcome.Secrets[0].NewMember = keyPackageRef(b.suite, &kp.kp)
	if _, err := Join(kp, wire.Encode(m), trustAll, nil); !errors.Is(err, ErrNoMatchingKeyPackage) {
		t.Errorf("join as a leaf that differs from the key package: %v, want ErrNoMatchingKeyPackage", err)
	}
	variantKP := &KeyPackage{kp: variant, initPriv: kp.initPriv, encPriv: kp.encPriv, identity: b}
	if _, err := Join(variantKP, res.Welcome, trustAll, nil); err != nil {
		t.Errorf("join with the key package actually added: %v", err)
	}
}

func TestCommitPathMustChangeEncryptionKey(t *testing.T) {
	g, kp := twoMemberGroup(t)
	leaf := *g.tree.Leaf(1)
	leaf.Source = wire.SourceCommit
	leaf.ParentHash = []byte{}
	if err := tree.SignLeaf(g.s, &leaf, kp.identity.sigPriv, g.gc.GroupID, 1); err != nil {
		t.Fatal(err)
	}
	ac := &wire.AuthenticatedContent{WireFormat: wire.WirePublicMessage, Content: wire.FramedContent{
		GroupID: g.gc.GroupID, Epoch: g.gc.Epoch, Sender: wire.Sender{Type: wire.SenderMember, Index: 1},
		ContentType: wire.ContentCommit, Commit: &wire.Commit{Path: &wire.UpdatePath{LeafNode: leaf}},
	}}
	if _, err := g.processCommit(ac); !errors.Is(err, ErrInvalidLeafNode) {
		t.Errorf("commit path keeping the committer's encryption key: %v, want ErrInvalidLeafNode", err)
	}
}
