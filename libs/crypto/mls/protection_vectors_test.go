package mls_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/framing"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/secrettree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

func TestVectorsSecretTree(t *testing.T) {
	var cases []struct {
		Suite            uint16   `json:"cipher_suite"`
		EncryptionSecret hexBytes `json:"encryption_secret"`
		SenderData       struct {
			SenderDataSecret hexBytes `json:"sender_data_secret"`
			Ciphertext       hexBytes `json:"ciphertext"`
			Key              hexBytes `json:"key"`
			Nonce            hexBytes `json:"nonce"`
		} `json:"sender_data"`
		Leaves [][]struct {
			Generation       uint32   `json:"generation"`
			ApplicationKey   hexBytes `json:"application_key"`
			ApplicationNonce hexBytes `json:"application_nonce"`
			HandshakeKey     hexBytes `json:"handshake_key"`
			HandshakeNonce   hexBytes `json:"handshake_nonce"`
		} `json:"leaves"`
	}
	loadVectors(t, "secret-tree.json", &cases)
	count := caseCounter{}
	for _, c := range cases {
		s := mustSuite(t, c.Suite)
		sd := c.SenderData
		key, nonce := secrettree.SenderDataKeyNonce(s, sd.SenderDataSecret, sd.Ciphertext)
		checkEq(t, "sender data key", key, sd.Key)
		checkEq(t, "sender data nonce", nonce, sd.Nonce)
		limits := secrettree.Limits{MaxForward: 1 << 16, Window: 64}
		tree := secrettree.New(s, c.EncryptionSecret, uint32(len(c.Leaves)), limits)
		for i, gens := range c.Leaves {
			for _, g := range gens {
				hs, err := tree.Get(treemath.LeafIndex(i), secrettree.Handshake, g.Generation)
				if err != nil {
					t.Fatalf("suite %d leaf %d gen %d: %v", c.Suite, i, g.Generation, err)
				}
				checkEq(t, "handshake key", hs.Key, g.HandshakeKey)
				checkEq(t, "handshake nonce", hs.Nonce, g.HandshakeNonce)
				app, err := tree.Get(treemath.LeafIndex(i), secrettree.Application, g.Generation)
				if err != nil {
					t.Fatalf("suite %d leaf %d gen %d: %v", c.Suite, i, g.Generation, err)
				}
				checkEq(t, "application key", app.Key, g.ApplicationKey)
				checkEq(t, "application nonce", app.Nonce, g.ApplicationNonce)
				// A generation is handed out once only.
				if _, err := tree.Get(treemath.LeafIndex(i), secrettree.Application, g.Generation); !errors.Is(err, secrettree.ErrGenerationUsed) {
					t.Errorf("suite %d leaf %d: second use of generation %d: %v", c.Suite, i, g.Generation, err)
				}
			}
		}
		// The same keys come out when the leaves are visited in reverse and
		// generations out of order (within the window).
		tree = secrettree.New(s, c.EncryptionSecret, uint32(len(c.Leaves)), limits)
		for i := len(c.Leaves) - 1; i >= 0; i-- {
			gens := c.Leaves[i]
			for j := len(gens) - 1; j >= 0; j-- {
				app, err := tree.Get(treemath.LeafIndex(i), secrettree.Application, gens[j].Generation)
				if err != nil {
					t.Fatalf("suite %d leaf %d gen %d (reverse): %v", c.Suite, i, gens[j].Generation, err)
				}
				checkEq(t, "application key (reverse order)", app.Key, gens[j].ApplicationKey)
			}
		}
		if _, err := tree.Get(treemath.LeafIndex(len(c.Leaves)), secrettree.Application, 0); !errors.Is(err, secrettree.ErrLeafOutOfRange) {
			t.Errorf("suite %d: leaf out of range: %v", c.Suite, err)
		}
		count[s.ID()]++
	}
	count.log(t, "secret-tree.json")
}

func TestVectorsMessageProtection(t *testing.T) {
	var cases []struct {
		Suite                   uint16   `json:"cipher_suite"`
		GroupID                 hexBytes `json:"group_id"`
		Epoch                   uint64   `json:"epoch"`
		TreeHash                hexBytes `json:"tree_hash"`
		ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
		SignaturePriv           hexBytes `json:"signature_priv"`
		SignaturePub            hexBytes `json:"signature_pub"`
		EncryptionSecret        hexBytes `json:"encryption_secret"`
		SenderDataSecret        hexBytes `json:"sender_data_secret"`
		MembershipKey           hexBytes `json:"membership_key"`
		Proposal                hexBytes `json:"proposal"`
		ProposalPub             hexBytes `json:"proposal_pub"`
		ProposalPriv            hexBytes `json:"proposal_priv"`
		Commit                  hexBytes `json:"commit"`
		CommitPub               hexBytes `json:"commit_pub"`
		CommitPriv              hexBytes `json:"commit_priv"`
		Application             hexBytes `json:"application"`
		ApplicationPriv         hexBytes `json:"application_priv"`
	}
	loadVectors(t, "message-protection.json", &cases)
	count := caseCounter{}
	for _, c := range cases {
		s := mustSuite(t, c.Suite)
		gc := wire.Encode(&wire.GroupContext{
			Version: wire.ProtocolVersion10, CipherSuite: c.Suite, GroupID: c.GroupID, Epoch: c.Epoch,
			TreeHash: c.TreeHash, ConfirmedTranscriptHash: c.ConfirmedTranscriptHash,
		})
		newTree := func() *secrettree.Tree {
			return secrettree.New(s, c.EncryptionSecret, 2, secrettree.DefaultLimits)
		}
		// body returns the encoded content body of ac for comparison.
		body := func(ac *wire.AuthenticatedContent) []byte {
			switch ac.Content.ContentType {
			case wire.ContentApplication:
				return ac.Content.ApplicationData
			case wire.ContentProposal:
				return wire.Encode(ac.Content.Proposal)
			default:
				return wire.Encode(ac.Content.Commit)
			}
		}
		unprotect := func(what string, msg []byte, tree *secrettree.Tree) *wire.AuthenticatedContent {
			t.Helper()
			m, err := wire.DecodeMLSMessage(msg)
			if err != nil {
				t.Fatalf("suite %d %s: %v", c.Suite, what, err)
			}
			var ac *wire.AuthenticatedContent
			if m.PublicMessage != nil {
				ac, err = framing.UnprotectPublic(s, m.PublicMessage, c.MembershipKey, gc)
			} else {
				ac, err = framing.UnprotectPrivate(s, m.PrivateMessage, tree, c.SenderDataSecret, framing.VerifyWith(s, c.SignaturePub, gc))
			}
			if err != nil {
				t.Fatalf("suite %d %s: %v", c.Suite, what, err)
			}
			if ac.Content.Sender != (wire.Sender{Type: wire.SenderMember, Index: 1}) {
				t.Errorf("suite %d %s: sender %+v, want member 1", c.Suite, what, ac.Content.Sender)
			}
			if err := framing.VerifySignature(s, ac, c.SignaturePub, gc); err != nil {
				t.Errorf("suite %d %s: %v", c.Suite, what, err)
			}
			return ac
		}
		for _, m := range []struct {
			name      string
			content   []byte
			pub, priv []byte
			ct        wire.ContentType
		}{
			{"proposal", c.Proposal, c.ProposalPub, c.ProposalPriv, wire.ContentProposal},
			{"commit", c.Commit, c.CommitPub, c.CommitPriv, wire.ContentCommit},
			{"application", c.Application, nil, c.ApplicationPriv, wire.ContentApplication},
		} {
			if m.pub != nil {
				checkEq(t, m.name+" (public vector)", body(unprotect(m.name+" public", m.pub, nil)), m.content)
			}
			checkEq(t, m.name+" (private vector)", body(unprotect(m.name+" private", m.priv, newTree())), m.content)

			// Protect the content ourselves and unprotect it again.
			fc := &wire.FramedContent{
				GroupID: c.GroupID, Epoch: c.Epoch, Sender: wire.Sender{Type: wire.SenderMember, Index: 1},
				ContentType: m.ct,
			}
			var err error
			switch m.ct {
			case wire.ContentApplication:
				fc.ApplicationData = m.content
			case wire.ContentProposal:
				fc.Proposal, err = wire.DecodeProposal(m.content)
			default:
				fc.Commit, err = wire.DecodeCommit(m.content)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, wf := range []wire.WireFormat{wire.WirePublicMessage, wire.WirePrivateMessage} {
				if wf == wire.WirePublicMessage && m.ct == wire.ContentApplication {
					continue
				}
				ac, err := framing.Sign(s, wf, fc, c.SignaturePriv, gc)
				if err != nil {
					t.Fatal(err)
				}
				if m.ct == wire.ContentCommit {
					ac.Auth.ConfirmationTag = bytes.Repeat([]byte{7}, s.HashSize())
				}
				msg := &wire.MLSMessage{Version: wire.ProtocolVersion10, WireFormat: wf}
				if wf == wire.WirePublicMessage {
					msg.PublicMessage, err = framing.ProtectPublic(s, ac, c.MembershipKey, gc)
				} else {
					msg.PrivateMessage, err = framing.ProtectPrivate(s, ac, newTree(), c.SenderDataSecret, 7)
				}
				if err != nil {
					t.Fatal(err)
				}
				got := unprotect(m.name+" round trip", wire.Encode(msg), newTree())
				checkEq(t, m.name+" round trip", body(got), m.content)
			}
		}
		// A public message with a tampered membership tag is rejected.
		m, _ := wire.DecodeMLSMessage(c.ProposalPub)
		m.PublicMessage.MembershipTag[0] ^= 1
		if _, err := framing.UnprotectPublic(s, m.PublicMessage, c.MembershipKey, gc); !errors.Is(err, framing.ErrBadMembershipTag) {
			t.Errorf("suite %d: tampered membership tag: %v", c.Suite, err)
		}
		count[s.ID()]++
	}
	count.log(t, "message-protection.json")
}
