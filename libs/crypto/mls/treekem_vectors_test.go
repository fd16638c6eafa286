package mls_test

import (
	"bytes"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

func TestVectorsTreeKEM(t *testing.T) {
	var cases []struct {
		Suite                   uint16   `json:"cipher_suite"`
		GroupID                 hexBytes `json:"group_id"`
		Epoch                   uint64   `json:"epoch"`
		ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
		RatchetTree             hexBytes `json:"ratchet_tree"`
		LeavesPrivate           []struct {
			Index          uint32   `json:"index"`
			EncryptionPriv hexBytes `json:"encryption_priv"`
			SignaturePriv  hexBytes `json:"signature_priv"`
			PathSecrets    []struct {
				Node       uint32   `json:"node"`
				PathSecret hexBytes `json:"path_secret"`
			} `json:"path_secrets"`
		} `json:"leaves_private"`
		UpdatePaths []struct {
			Sender        uint32     `json:"sender"`
			UpdatePath    hexBytes   `json:"update_path"`
			PathSecrets   []hexBytes `json:"path_secrets"`
			CommitSecret  hexBytes   `json:"commit_secret"`
			TreeHashAfter hexBytes   `json:"tree_hash_after"`
		} `json:"update_paths"`
	}
	loadVectors(t, "treekem.json", &cases)
	count := caseCounter{}
	for ci, c := range cases {
		s := mustSuite(t, c.Suite)
		// The provisional GroupContext uses the vector's epoch as given: it
		// is already the epoch the path creates.
		gcFor := func(treeHash []byte) []byte {
			return wire.Encode(&wire.GroupContext{
				Version: wire.ProtocolVersion10, CipherSuite: c.Suite, GroupID: c.GroupID, Epoch: c.Epoch,
				TreeHash: treeHash, ConfirmedTranscriptHash: c.ConfirmedTranscriptHash,
			})
		}
		// privateKeys returns the private keys the vector gives member i.
		privateKeys := func(tr *tree.Tree, i int) map[treemath.NodeIndex][]byte {
			lp := c.LeavesPrivate[i]
			privs := map[treemath.NodeIndex][]byte{treemath.LeafIndex(lp.Index).Node(): lp.EncryptionPriv}
			for _, p := range lp.PathSecrets {
				priv, pub, err := tr.PrivateKeyFromPathSecret(p.PathSecret)
				if err != nil {
					t.Fatal(err)
				}
				checkEq(t, "public key from path secret", pub, tr.EncryptionKey(treemath.NodeIndex(p.Node)))
				privs[treemath.NodeIndex(p.Node)] = priv
			}
			return privs
		}
		for _, u := range c.UpdatePaths {
			up, err := wire.DecodeUpdatePath(u.UpdatePath)
			if err != nil {
				t.Fatalf("case %d: %v", ci, err)
			}
			sender := treemath.LeafIndex(u.Sender)
			for i, lp := range c.LeavesPrivate {
				if lp.Index == u.Sender {
					continue
				}
				tr := mustTree(t, c.Suite, c.RatchetTree)
				privs := privateKeys(tr, i)
				if err := tree.VerifyLeafSignature(s, &up.LeafNode, c.GroupID, u.Sender); err != nil {
					t.Fatalf("case %d: %v", ci, err)
				}
				if err := tr.MergeUpdatePath(sender, up); err != nil {
					t.Fatalf("case %d sender %d: %v", ci, u.Sender, err)
				}
				checkEq(t, "tree_hash_after", tr.TreeHash(), u.TreeHashAfter)
				ps, err := tr.DecryptUpdatePath(treemath.LeafIndex(lp.Index), sender, up, privs, nil, gcFor(u.TreeHashAfter))
				if err != nil {
					t.Fatalf("case %d sender %d receiver %d: %v", ci, u.Sender, lp.Index, err)
				}
				checkEq(t, "path secret", ps.PathSecret, u.PathSecrets[lp.Index])
				checkEq(t, "commit secret", ps.CommitSecret, u.CommitSecret)
				if err := tr.VerifyParentHashes(); err != nil {
					t.Errorf("case %d: tree after path: %v", ci, err)
				}
			}
		}
		// Each member with a private leaf creates a fresh path; every other
		// one derives the same commit secret and tree.
		for si, sp := range c.LeavesPrivate {
			senderTree := mustTree(t, c.Suite, c.RatchetTree)
			sender := treemath.LeafIndex(sp.Index)
			leaf := *senderTree.Leaf(sender)
			up, secrets, err := senderTree.CreateUpdatePath(sender, &leaf, sp.SignaturePriv, c.GroupID, nil, gcFor)
			if err != nil {
				t.Fatalf("case %d: create path from %d: %v", ci, sp.Index, err)
			}
			if err := senderTree.VerifyParentHashes(); err != nil {
				t.Errorf("case %d: sender tree after own path: %v", ci, err)
			}
			up, err = wire.DecodeUpdatePath(wire.Encode(up))
			if err != nil {
				t.Fatal(err)
			}
			for ri, rp := range c.LeavesPrivate {
				if ri == si {
					continue
				}
				tr := mustTree(t, c.Suite, c.RatchetTree)
				privs := privateKeys(tr, ri)
				if err := tr.MergeUpdatePath(sender, up); err != nil {
					t.Fatalf("case %d: merge own path: %v", ci, err)
				}
				if !bytes.Equal(tr.TreeHash(), senderTree.TreeHash()) {
					t.Fatalf("case %d: receiver %d tree differs from sender %d", ci, rp.Index, sp.Index)
				}
				ps, err := tr.DecryptUpdatePath(treemath.LeafIndex(rp.Index), sender, up, privs, nil, gcFor(tr.TreeHash()))
				if err != nil {
					t.Fatalf("case %d: decrypt own path: %v", ci, err)
				}
				checkEq(t, "commit secret of a fresh path", ps.CommitSecret, secrets.CommitSecret)
			}
		}
		count[s.ID()]++
	}
	count.log(t, "treekem.json")
}
