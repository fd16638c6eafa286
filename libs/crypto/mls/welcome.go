package mls

import (
	"fmt"
	"slices"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/keysched"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// Labels of the Welcome (RFC 9420, Section 12.4.3).
const (
	welcomeLabel   = "Welcome"
	groupInfoLabel = "GroupInfoTBS"
)

// RestoreKeyPackage rebuilds the owner's view of a KeyPackage from its
// MLSMessage bytes and its three private keys (HPKE init and encryption
// keys, signature key), for example after a restart.
func RestoreKeyPackage(kpMessage, initPriv, encPriv, sigPriv []byte) (*KeyPackage, error) {
	m, err := wire.DecodeMLSMessage(kpMessage)
	if err != nil {
		return nil, err
	}
	if m.KeyPackage == nil {
		return nil, fmt.Errorf("%w: message is not a key package", ErrInvalidKeyPackage)
	}
	kp := m.KeyPackage
	s, err := suite.New(suite.ID(kp.CipherSuite))
	if err != nil {
		return nil, err
	}
	if err := validateKeyPackage(s, kp); err != nil {
		return nil, err
	}
	for _, check := range []struct {
		what      string
		priv, pub []byte
		derive    func([]byte) ([]byte, error)
	}{
		{"init", initPriv, kp.InitKey, s.HPKEPublicKey},
		{"encryption", encPriv, kp.LeafNode.EncryptionKey, s.HPKEPublicKey},
		{"signature", sigPriv, kp.LeafNode.SignatureKey, s.SignaturePublicKey},
	} {
		pub, err := check.derive(check.priv)
		if err != nil || string(pub) != string(check.pub) {
			return nil, fmt.Errorf("%w: %s private key does not match", ErrInvalidKeyPackage, check.what)
		}
	}
	id := &Identity{suite: s, sigPriv: slices.Clone(sigPriv), sigPub: kp.LeafNode.SignatureKey, credential: kp.LeafNode.Credential}
	return &KeyPackage{kp: *kp, initPriv: slices.Clone(initPriv), encPriv: slices.Clone(encPriv), identity: id}, nil
}

// JoinOptions carries what a joiner may need beyond the Welcome.
type JoinOptions struct {
	// RatchetTree is the encoded ratchet tree, required when the GroupInfo
	// has no ratchet_tree extension.
	RatchetTree []byte
	// ExternalPSKs maps PSK ids to secrets for PSKs the Welcome names.
	ExternalPSKs map[string][]byte
	// Now is the clock for KeyPackage lifetimes in later commits; nil means
	// time.Now.
	Now func() time.Time
	// MaxLeafLifetime is the longest KeyPackage lifetime accepted, in the
	// tree joined and later (see Group.SetMaxLeafLifetime); zero means no
	// bound.
	MaxLeafLifetime time.Duration
	// ResumeFrom lists earlier groups of this member whose resumption PSKs
	// a branch or reinit Welcome names.
	ResumeFrom []*Group
	// TrustedExternalSenders, when not nil, is the joined group's
	// SetTrustedExternalSenders: a group whose external_senders names
	// another key is refused with ErrUntrustedExternalSender.
	TrustedExternalSenders [][]byte
}

// Join joins a group from a Welcome (an MLSMessage) sent to kp. validate
// checks every member's credential in the tree joined, and later new
// members'; it must not be nil.
func Join(kp *KeyPackage, welcome []byte, validate CredentialValidator, opts *JoinOptions) (*Group, error) {
	if validate == nil {
		return nil, ErrNoCredentialValidator
	}
	if opts == nil {
		opts = &JoinOptions{}
	}
	m, err := wire.DecodeMLSMessage(welcome)
	if err != nil {
		return nil, err
	}
	if m.Welcome == nil {
		return nil, fmt.Errorf("%w: wire format %d, want welcome", ErrUnexpectedMessage, m.WireFormat)
	}
	s := kp.identity.suite
	g := &Group{
		s: s, sigPriv: kp.identity.sigPriv, privs: map[treemath.NodeIndex][]byte{},
		externalPSKs: map[string][]byte{}, resumption: map[uint64][]byte{},
	}
	for id, secret := range opts.ExternalPSKs {
		g.AddExternalPSK([]byte(id), secret)
	}
	g.resumeFrom = opts.ResumeFrom
	g.now = opts.Now
	g.SetMaxLeafLifetime(opts.MaxLeafLifetime)
	g.validateCredential = validate
	g.SetTrustedExternalSenders(opts.TrustedExternalSenders)
	gs, gi, pskSecret, err := g.openWelcome(m.Welcome, &kp.kp, kp.initPriv)
	if err != nil {
		return nil, err
	}
	g.gc = gi.GroupContext
	if g.gc.Version != wire.ProtocolVersion10 || g.gc.CipherSuite != uint16(s.ID()) {
		return nil, fmt.Errorf("%w: group version %d suite %d", ErrNoMatchingKeyPackage, g.gc.Version, g.gc.CipherSuite)
	}
	if err := g.checkResumption(gs.PSKs); err != nil {
		return nil, err
	}
	if err := g.checkTrustedExternalSenders(g.gc.Extensions); err != nil {
		return nil, err
	}
	if g.tree, err = loadTree(s, gi, opts.RatchetTree); err != nil {
		return nil, err
	}
	if err := g.validateTree(); err != nil {
		return nil, err
	}
	signer := g.tree.Leaf(treemath.LeafIndex(gi.Signer))
	if signer == nil {
		return nil, fmt.Errorf("%w: group info signer %d", ErrUnknownSender, gi.Signer)
	}
	if err := s.VerifyWithLabel(signer.SignatureKey, groupInfoLabel, gi.TBS(), gi.Signature); err != nil {
		return nil, fmt.Errorf("group info: %w", err)
	}
	// my_leaf is the leaf identical to the KeyPackage's (Section
	// 12.4.3.1); keys are unique in a valid tree, so at most one matches.
	me := -1
	own := wire.Encode(&kp.kp.LeafNode)
	g.tree.Members(func(l treemath.LeafIndex, leaf *wire.LeafNode) {
		if string(leaf.EncryptionKey) == string(kp.kp.LeafNode.EncryptionKey) && string(wire.Encode(leaf)) == string(own) {
			me = int(l)
		}
	})
	if me < 0 {
		return nil, fmt.Errorf("%w: own leaf not in the tree", ErrNoMatchingKeyPackage)
	}
	g.me = treemath.LeafIndex(me)
	g.privs[g.me.Node()] = slices.Clone(kp.encPriv)
	if gs.PathSecret != nil {
		if err := g.installPathSecret(treemath.LeafIndex(gi.Signer), gs.PathSecret); err != nil {
			return nil, err
		}
	}
	g.gcBytes = wire.Encode(&g.gc)
	g.installEpoch(keysched.FromJoiner(s, gs.JoinerSecret, pskSecret, g.gcBytes))
	if err := keysched.VerifyConfirmationTag(s, g.epoch.ConfirmationKey, g.gc.ConfirmedTranscriptHash, gi.ConfirmationTag); err != nil {
		return nil, fmt.Errorf("group info: %w", err)
	}
	g.confTag = slices.Clone(gi.ConfirmationTag)
	g.interim = keysched.InterimTranscriptHash(s, g.gc.ConfirmedTranscriptHash, gi.ConfirmationTag)
	return g, nil
}

// checkResumption applies the Welcome rules of RFC 9420, Section
// 12.4.3.1 for a group that resumes another (reinit or branch): at most one
// such PSK, the new group in epoch 1, and for reinit the parameters of the
// old group's ReInit, for branch its version and cipher suite. The old
// group is one of JoinOptions.ResumeFrom (the PSK was found there).
func (g *Group) checkResumption(psks []wire.PreSharedKeyID) error {
	var res *wire.PreSharedKeyID
	for i := range psks {
		if psks[i].Type != wire.PSKResumption || psks[i].Usage == wire.ResumptionApplication {
			continue
		}
		if res != nil {
			return fmt.Errorf("%w: more than one reinit or branch psk", ErrBadResumption)
		}
		res = &psks[i]
	}
	if res == nil {
		return nil
	}
	if g.gc.Epoch != 1 {
		return fmt.Errorf("%w: resuming group starts in epoch %d, want 1", ErrBadResumption, g.gc.Epoch)
	}
	i := slices.IndexFunc(g.resumeFrom, func(old *Group) bool { return string(old.gc.GroupID) == string(res.PSKGroupID) })
	if i < 0 {
		return fmt.Errorf("%w: group %x not among ResumeFrom", ErrUnknownPSK, res.PSKGroupID)
	}
	old := g.resumeFrom[i]
	switch res.Usage {
	case wire.ResumptionReInit:
		ri := old.reinit
		if ri == nil || res.PSKEpoch != old.gc.Epoch {
			return fmt.Errorf("%w: epoch %d of group %x did not end in a reinit", ErrBadResumption, res.PSKEpoch, res.PSKGroupID)
		}
		if string(ri.GroupID) != string(g.gc.GroupID) || ri.Version != g.gc.Version || ri.CipherSuite != g.gc.CipherSuite ||
			!slices.EqualFunc(ri.Extensions, g.gc.Extensions, func(a, b wire.Extension) bool { return a.Type == b.Type && string(a.Data) == string(b.Data) }) {
			return fmt.Errorf("%w: new group differs from the reinit proposal", ErrBadResumption)
		}
	case wire.ResumptionBranch:
		if old.gc.Version != g.gc.Version || old.gc.CipherSuite != g.gc.CipherSuite {
			return fmt.Errorf("%w: branch changes version or cipher suite", ErrBadResumption)
		}
	}
	return nil
}

// openWelcome finds the secrets for kp in w, decrypts them with initPriv
// and decrypts the GroupInfo. The GroupInfo's signature is not checked yet:
// the signer's key is in the tree.
func (g *Group) openWelcome(w *wire.Welcome, kp *wire.KeyPackage, initPriv []byte) (*wire.GroupSecrets, *wire.GroupInfo, []byte, error) {
	s := g.s
	if w.CipherSuite != uint16(s.ID()) {
		return nil, nil, nil, fmt.Errorf("%w: welcome suite %d, key package suite %d", ErrNoMatchingKeyPackage, w.CipherSuite, s.ID())
	}
	ref := keyPackageRef(s, kp)
	i := slices.IndexFunc(w.Secrets, func(e wire.EncryptedGroupSecrets) bool { return string(e.NewMember) == string(ref) })
	if i < 0 {
		return nil, nil, nil, ErrNoMatchingKeyPackage
	}
	ct := w.Secrets[i].Secrets
	gsBytes, err := s.DecryptWithLabel(initPriv, welcomeLabel, w.EncryptedGroupInfo, ct.KEMOutput, ct.Ciphertext)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("decrypt group secrets: %w", err)
	}
	gs, err := wire.DecodeGroupSecrets(gsBytes)
	if err != nil {
		return nil, nil, nil, err
	}
	pskSecret, err := g.pskSecret(gs.PSKs)
	if err != nil {
		return nil, nil, nil, err
	}
	key, nonce := keysched.WelcomeKeyNonce(s, keysched.WelcomeSecret(s, gs.JoinerSecret, pskSecret))
	giBytes, err := s.Open(key, nonce, nil, w.EncryptedGroupInfo)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("decrypt group info: %w", err)
	}
	gi, err := wire.DecodeGroupInfo(giBytes)
	if err != nil {
		return nil, nil, nil, err
	}
	return gs, gi, pskSecret, nil
}

// loadTree takes the tree from the GroupInfo's ratchet_tree extension or,
// failing that, from the supplied bytes.
func loadTree(s *suite.Suite, gi *wire.GroupInfo, supplied []byte) (*tree.Tree, error) {
	data, ok := wire.FindExtension(gi.Extensions, wire.ExtRatchetTree)
	if !ok {
		if supplied == nil {
			return nil, ErrNoRatchetTree
		}
		data = supplied
	}
	rt, err := wire.DecodeRatchetTree(data)
	if err != nil {
		return nil, err
	}
	return tree.FromWire(s, rt)
}

// validateTree checks a tree received from others against the group
// context (RFC 9420, Section 12.4.3.1): tree hash, parent hashes, leaf
// signatures and the other leaf checks of Section 7.3. Unmerged leaves were
// checked when the tree was decoded. The leaf signatures, one per member
// and nearly all of a large join's cost, are verified while the rest is
// checked (both only read the tree's nodes).
func (g *Group) validateTree() error {
	signatures := make(chan error, 1)
	go func() { signatures <- g.tree.VerifyLeafSignatures(g.gc.GroupID) }()
	err := g.validateTreeShape()
	if sigErr := <-signatures; err == nil {
		err = sigErr
	}
	return err
}

func (g *Group) validateTreeShape() error {
	if string(g.tree.TreeHash()) != string(g.gc.TreeHash) {
		return ErrTreeHash
	}
	if err := g.tree.VerifyParentHashes(); err != nil {
		return err
	}
	return g.validateTreeLeaves()
}

// installPathSecret sets the path secret a Welcome gives for the lowest
// common ancestor of this member and the signer, and derives the keys of
// the nodes above it on the signer's filtered direct path.
func (g *Group) installPathSecret(signer treemath.LeafIndex, secret []byte) error {
	lca := treemath.CommonAncestor(g.me.Node(), signer.Node())
	path, _ := g.tree.FilteredDirectPath(signer)
	i := slices.Index(path, lca)
	if i < 0 {
		return fmt.Errorf("%w: common ancestor %d not on the signer's filtered path", tree.ErrPathShape, lca)
	}
	for ; i < len(path); i++ {
		priv, pub, err := g.tree.PrivateKeyFromPathSecret(secret)
		if err != nil {
			return err
		}
		if string(pub) != string(g.tree.EncryptionKey(path[i])) {
			return fmt.Errorf("%w: node %d", tree.ErrPathKey, path[i])
		}
		g.privs[path[i]] = priv
		secret = g.s.DeriveSecret(secret, "path")
	}
	return nil
}
