package tree

import (
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// TreeKEM errors, returned wrapped. Test for them with errors.Is.
var (
	// ErrPathShape means an UpdatePath whose node count or ciphertext counts
	// do not match the sender's filtered direct path and its resolutions.
	ErrPathShape = errors.New("mls: update path does not fit the tree")
	// ErrPathKey means a public key in an UpdatePath does not match the key
	// derived from the decrypted path secret.
	ErrPathKey = errors.New("mls: update path key does not match its path secret")
	// ErrNoPathKey means the receiver holds no private key for any node the
	// path secret was encrypted to.
	ErrNoPathKey = errors.New("mls: no private key to decrypt the update path")
)

// updatePathLabel is the EncryptWithLabel label of path secrets.
const updatePathLabel = "UpdatePathNode"

// FilteredDirectPath returns the filtered direct path of leaf l (RFC 9420,
// Section 4.1.2) and, for each of its nodes, the child not on l's side.
func (t *Tree) FilteredDirectPath(l treemath.LeafIndex) (path, copath []treemath.NodeIndex) {
	x := l.Node()
	root := t.Root()
	for x != root {
		sib := x.Sibling()
		x = x.Parent()
		if t.hasResolution(sib) {
			path = append(path, x)
			copath = append(copath, sib)
		}
	}
	return path, copath
}

// hasResolution reports whether x's resolution is non-empty, without
// building it.
func (t *Tree) hasResolution(x treemath.NodeIndex) bool {
	if !isBlank(&t.nodes[x]) {
		return true
	}
	if x.IsLeaf() {
		return false
	}
	return t.hasResolution(x.Left()) || t.hasResolution(x.Right())
}

// setPath blanks l's direct path, installs keys on its filtered direct
// path with parent hashes chained from the root down, and returns the parent
// hash l's new leaf must carry.
func (t *Tree) setPath(l treemath.LeafIndex, path, copath []treemath.NodeIndex, keys [][]byte) []byte {
	t.blankDirectPath(l)
	for i := len(path) - 1; i >= 0; i-- {
		p := &wire.ParentNode{EncryptionKey: keys[i], ParentHash: []byte{}}
		if i+1 < len(path) {
			p.ParentHash = t.ParentHash(path[i+1], copath[i+1])
		}
		t.set(path[i], wire.Node{Parent: p})
	}
	if len(path) == 0 {
		return []byte{}
	}
	return t.ParentHash(path[0], copath[0])
}

// MergeUpdatePath applies a received UpdatePath from sender to the public
// tree: the sender's leaf, the new keys on its filtered direct path and
// their parent hashes, which must match the one in the new leaf. The caller
// verifies the leaf (signature, source, capabilities) first.
func (t *Tree) MergeUpdatePath(sender treemath.LeafIndex, up *wire.UpdatePath) error {
	if t.Leaf(sender) == nil {
		return fmt.Errorf("%w: update path from leaf %d", ErrBlankLeaf, sender)
	}
	path, copath := t.FilteredDirectPath(sender)
	if len(up.Nodes) != len(path) {
		return fmt.Errorf("%w: %d path nodes, filtered direct path has %d", ErrPathShape, len(up.Nodes), len(path))
	}
	if up.LeafNode.Source != wire.SourceCommit {
		return fmt.Errorf("%w: update path leaf source %d", ErrPathShape, up.LeafNode.Source)
	}
	keys := make([][]byte, len(path))
	for i := range up.Nodes {
		keys[i] = up.Nodes[i].EncryptionKey
	}
	want := t.setPath(sender, path, copath, keys)
	if string(want) != string(up.LeafNode.ParentHash) {
		return fmt.Errorf("%w: update path leaf", ErrParentHash)
	}
	leaf := up.LeafNode
	t.set(sender.Node(), wire.Node{Leaf: &leaf})
	return nil
}

// PathSecrets is what the holder of a path learns: the private keys of the
// nodes whose path secrets it knows, and the commit secret.
type PathSecrets struct {
	_ [0]func()
	// PrivateKeys maps node indices to serialized HPKE private keys.
	PrivateKeys map[treemath.NodeIndex][]byte
	// PathSecret is the first path secret learned (the one decrypted, for a
	// receiver).
	PathSecret []byte
	// NodeSecrets maps each node of the path to its path secret, for the
	// committer to give joiners the secret of their common ancestor.
	NodeSecrets map[treemath.NodeIndex][]byte
	// CommitSecret is the path secret one step past the root.
	CommitSecret []byte
}

// deriveUp derives node keys for path[from:] starting from secret, checking
// them against want when it is non-nil, and returns the commit secret.
func (t *Tree) deriveUp(secret []byte, path []treemath.NodeIndex, from int, want [][]byte, into map[treemath.NodeIndex][]byte, secrets map[treemath.NodeIndex][]byte) ([]byte, [][]byte, error) {
	pubs := make([][]byte, 0, len(path)-from)
	for i := from; i < len(path); i++ {
		if i > from {
			secret = t.s.DeriveSecret(secret, "path")
		}
		if secrets != nil {
			secrets[path[i]] = secret
		}
		priv, pub, err := t.s.DeriveKeyPair(t.s.DeriveSecret(secret, "node"))
		if err != nil {
			return nil, nil, err
		}
		if want != nil && string(pub) != string(want[i]) {
			return nil, nil, fmt.Errorf("%w: node %d", ErrPathKey, path[i])
		}
		into[path[i]] = priv
		pubs = append(pubs, pub)
	}
	return t.s.DeriveSecret(secret, "path"), pubs, nil
}

// CreateUpdatePath makes a fresh path for sender (RFC 9420, Section 7.5):
// it draws a leaf secret, derives the path secrets and node keys, installs
// them with their parent hashes, completes newLeaf (encryption key, commit
// source, parent hash, signature) and sets it, then encrypts each path
// secret to the resolution of its copath node minus the excluded leaves
// (members added by the same commit). groupContext returns the encoded
// provisional GroupContext for the tree hash after the path is applied.
func (t *Tree) CreateUpdatePath(sender treemath.LeafIndex, newLeaf *wire.LeafNode, sigPriv, groupID []byte,
	excluded []treemath.LeafIndex, groupContext func(treeHash []byte) []byte) (*wire.UpdatePath, *PathSecrets, error) {
	if t.Leaf(sender) == nil {
		return nil, nil, fmt.Errorf("%w: update path from leaf %d", ErrBlankLeaf, sender)
	}
	leafSecret := make([]byte, t.s.HashSize())
	if _, err := rand.Read(leafSecret); err != nil {
		return nil, nil, fmt.Errorf("leaf secret: %w", err)
	}
	defer clear(leafSecret)
	ps := &PathSecrets{PrivateKeys: map[treemath.NodeIndex][]byte{}}
	leafPriv, leafPub, err := t.s.DeriveKeyPair(t.s.DeriveSecret(leafSecret, "node"))
	if err != nil {
		return nil, nil, err
	}
	ps.PrivateKeys[sender.Node()] = leafPriv

	path, copath := t.FilteredDirectPath(sender)
	first := t.s.DeriveSecret(leafSecret, "path")
	ps.PathSecret = first
	var pubs [][]byte
	if len(path) == 0 {
		ps.CommitSecret = first
	} else {
		ps.NodeSecrets = map[treemath.NodeIndex][]byte{}
		ps.CommitSecret, pubs, err = t.deriveUp(first, path, 0, nil, ps.PrivateKeys, ps.NodeSecrets)
		if err != nil {
			return nil, nil, err
		}
	}
	leaf := *newLeaf
	leaf.EncryptionKey = leafPub
	leaf.Source = wire.SourceCommit
	leaf.ParentHash = t.setPath(sender, path, copath, pubs)
	if err := SignLeaf(t.s, &leaf, sigPriv, groupID, uint32(sender)); err != nil {
		return nil, nil, err
	}
	t.set(sender.Node(), wire.Node{Leaf: &leaf})

	gc := groupContext(t.TreeHash())
	up := &wire.UpdatePath{LeafNode: leaf, Nodes: make([]wire.UpdatePathNode, len(path))}
	var jobs []encryptJob
	secret := first
	for i := range path {
		if i > 0 {
			secret = t.s.DeriveSecret(secret, "path")
		}
		up.Nodes[i].EncryptionKey = pubs[i]
		res := t.excludedResolution(copath[i], excluded)
		up.Nodes[i].EncryptedPathSecrets = make([]wire.HPKECiphertext, len(res))
		for j, r := range res {
			jobs = append(jobs, encryptJob{out: &up.Nodes[i].EncryptedPathSecrets[j], pub: t.EncryptionKey(r), secret: secret, node: r})
		}
	}
	if err := t.encryptAll(jobs, gc); err != nil {
		return nil, nil, err
	}
	return up, ps, nil
}

// encryptJob is one path secret to encrypt to one node.
type encryptJob struct {
	out    *wire.HPKECiphertext
	pub    []byte
	secret []byte
	node   treemath.NodeIndex
}

// parallelThreshold is the number of encryptions above which they are
// spread over all CPUs: each is an HPKE encapsulation, and a commit in a
// group with many blank parents needs one per member.
const parallelThreshold = 16

// encryptAll encrypts every job's path secret under the provisional group
// context gc.
func (t *Tree) encryptAll(jobs []encryptJob, gc []byte) error {
	do := func(j *encryptJob) error {
		kem, ct, err := t.s.EncryptWithLabel(j.pub, updatePathLabel, gc, j.secret)
		if err != nil {
			return fmt.Errorf("encrypt path secret to node %d: %w", j.node, err)
		}
		*j.out = wire.HPKECiphertext{KEMOutput: kem, Ciphertext: ct}
		return nil
	}
	workers := runtime.GOMAXPROCS(0)
	if len(jobs) < parallelThreshold || workers == 1 {
		for i := range jobs {
			if err := do(&jobs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(jobs); i += workers {
				if err := do(&jobs[i]); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (t *Tree) excludedResolution(x treemath.NodeIndex, excluded []treemath.LeafIndex) []treemath.NodeIndex {
	res := t.Resolution(x)
	if len(excluded) == 0 {
		return res
	}
	return slices.DeleteFunc(res, func(r treemath.NodeIndex) bool {
		return r.IsLeaf() && slices.Contains(excluded, r.Leaf())
	})
}

// DecryptUpdatePath recovers the path secrets of a path already merged by
// MergeUpdatePath, for member me holding the private keys privs (node index
// to serialized HPKE private key). It checks every derived public key
// against the tree.
func (t *Tree) DecryptUpdatePath(me, sender treemath.LeafIndex, up *wire.UpdatePath, privs map[treemath.NodeIndex][]byte,
	excluded []treemath.LeafIndex, groupContext []byte) (*PathSecrets, error) {
	path, copath := t.FilteredDirectPath(sender)
	if len(up.Nodes) != len(path) {
		return nil, fmt.Errorf("%w: %d path nodes, filtered direct path has %d", ErrPathShape, len(up.Nodes), len(path))
	}
	i := slices.IndexFunc(copath, func(c treemath.NodeIndex) bool { return treemath.InSubtree(me.Node(), c) })
	if i < 0 {
		return nil, fmt.Errorf("%w: leaf %d is not below the path of leaf %d", ErrPathShape, me, sender)
	}
	res := t.excludedResolution(copath[i], excluded)
	cts := up.Nodes[i].EncryptedPathSecrets
	if len(cts) != len(res) {
		return nil, fmt.Errorf("%w: %d ciphertexts for a resolution of %d", ErrPathShape, len(cts), len(res))
	}
	j := slices.IndexFunc(res, func(r treemath.NodeIndex) bool { return privs[r] != nil })
	if j < 0 {
		return nil, ErrNoPathKey
	}
	secret, err := t.s.DecryptWithLabel(privs[res[j]], updatePathLabel, groupContext, cts[j].KEMOutput, cts[j].Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("decrypt path secret: %w", err)
	}
	want := make([][]byte, len(path))
	for k := range path {
		want[k] = t.EncryptionKey(path[k])
	}
	ps := &PathSecrets{PrivateKeys: map[treemath.NodeIndex][]byte{}, PathSecret: secret}
	ps.CommitSecret, _, err = t.deriveUp(secret, path, i, want, ps.PrivateKeys, nil)
	if err != nil {
		return nil, err
	}
	return ps, nil
}

// PrivateKeyFromPathSecret derives the HPKE key pair of a node from its
// path secret.
func (t *Tree) PrivateKeyFromPathSecret(secret []byte) (priv, pub []byte, err error) {
	return t.s.DeriveKeyPair(t.s.DeriveSecret(secret, "node"))
}

// PrunePrivateKeys drops the private keys of nodes that are now blank or
// carry another public key. It does not zero them: the map is usually a
// staged copy whose keys the current epoch still uses.
func (t *Tree) PrunePrivateKeys(privs map[treemath.NodeIndex][]byte) {
	for x, priv := range privs {
		if uint32(x) >= uint32(len(t.nodes)) || t.IsBlank(x) {
			delete(privs, x)
			continue
		}
		pub, err := t.s.HPKEPublicKey(priv)
		if err != nil || string(pub) != string(t.EncryptionKey(x)) {
			delete(privs, x)
		}
	}
}
