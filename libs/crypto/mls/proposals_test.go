package mls_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// broadcast has every member of to process msg (a proposal) and checks it
// was stored.
func broadcast(t *testing.T, msg []byte, to ...*member) {
	t.Helper()
	for _, m := range to {
		r, err := m.g.Process(msg)
		if err != nil || !r.Proposal {
			t.Fatalf("leaf %d: process proposal: %+v %v", m.g.LeafIndex(), r, err)
		}
	}
}

// G1: PreSharedKey proposals sent on their own, external and resumption
// (RFC 9420, Sections 8.4, 8.6, 12.1.4), committed by reference by
// another member.
func TestStandalonePSKProposals(t *testing.T) {
	for _, cs := range []mls.CipherSuite{mls.P256AES128GCMSHA256P256, mls.DefaultCipherSuite} {
		for _, private := range []bool{false, true} {
			t.Run(fmt.Sprintf("suite%d/private=%v", cs, private), func(t *testing.T) {
				ms := setupSuite(t, cs, 3)
				a, b, c := ms[0], ms[1], ms[2]
				for _, m := range ms {
					m.g.PrivateHandshake = private
				}
				if _, err := a.g.Propose(mls.ExternalPSKProposal([]byte("psk"))); !errors.Is(err, mls.ErrUnknownPSK) {
					t.Fatalf("proposal of a PSK not held: %v, want ErrUnknownPSK", err)
				}
				for _, m := range ms {
					m.g.AddExternalPSK([]byte("psk"), []byte("secret"))
				}
				p, err := a.g.Propose(mls.ExternalPSKProposal([]byte("psk")))
				if err != nil {
					t.Fatal(err)
				}
				broadcast(t, p, b, c)
				res, err := b.g.Commit(mls.CommitOptions{})
				if err != nil {
					t.Fatal(err)
				}
				deliver(t, b, res, a, c)
				agree(t, a, b, c)

				// A resumption PSK of the epoch before, proposed by C.
				if _, err := c.g.Propose(mls.ResumptionPSKProposal(99)); !errors.Is(err, mls.ErrUnknownPSK) {
					t.Fatalf("resumption PSK of an epoch never seen: %v", err)
				}
				p, err = c.g.Propose(mls.ResumptionPSKProposal(a.g.Epoch() - 1))
				if err != nil {
					t.Fatal(err)
				}
				broadcast(t, p, a, b)
				res, err = a.g.Commit(mls.CommitOptions{})
				if err != nil {
					t.Fatal(err)
				}
				deliver(t, a, res, b, c)
				agree(t, a, b, c)
			})
		}
	}
}

// A member that lacks the PSK a proposal names cannot process the commit
// and keeps its state.
func TestPSKProposalMissingAtReceiver(t *testing.T) {
	ms := setup(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	a.g.AddExternalPSK([]byte("psk"), []byte("secret"))
	b.g.AddExternalPSK([]byte("psk"), []byte("secret"))
	p, err := a.g.Propose(mls.ExternalPSKProposal([]byte("psk")))
	if err != nil {
		t.Fatal(err)
	}
	broadcast(t, p, b, c)
	res, err := b.g.Commit(mls.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	epoch := c.g.Epoch()
	if _, err := c.g.Process(res.Commit); !errors.Is(err, mls.ErrUnknownPSK) {
		t.Fatalf("commit with a PSK the receiver lacks: %v, want ErrUnknownPSK", err)
	}
	if c.g.Epoch() != epoch {
		t.Fatal("failed commit changed the epoch")
	}
	c.g.AddExternalPSK([]byte("psk"), []byte("secret"))
	deliver(t, b, res, a, c)
	agree(t, a, b, c)
}

// G2: GroupContextExtensions as a proposal and as a commit option
// (Section 12.1.7), and Branch with extensions (Section 11.3).
func TestGroupContextExtensions(t *testing.T) {
	ms := setup(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	ds := newMember(t, mls.P256AES128GCMSHA256P256, "ds")
	senders := mls.ExternalSendersExtension([]mls.ExternalSender{ds.id.ExternalSender()})
	p, err := b.g.Propose(mls.GroupContextExtensionsProposal([]mls.Extension{senders}))
	if err != nil {
		t.Fatal(err)
	}
	broadcast(t, p, a, c)
	res, err := c.g.Commit(mls.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, c, res, a, b)
	agree(t, a, b, c)
	for _, m := range ms {
		got, err := m.g.ExternalSenders()
		if err != nil || len(got) != 1 || !bytes.Equal(got[0].SignatureKey, ds.id.SignaturePublicKey()) || string(got[0].Identity) != "ds" {
			t.Fatalf("leaf %d: external senders %v %v", m.g.LeafIndex(), got, err)
		}
	}

	// The commit option replaces them: required_capabilities with no
	// requirement, then an empty list removes everything.
	required := mls.Extension{Type: 3, Data: []byte{0, 0, 0}}
	res, err = a.g.Commit(mls.CommitOptions{GroupContextExtensions: []mls.Extension{required}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res, b, c)
	agree(t, a, b, c)
	if ext := c.g.Extensions(); len(ext) != 1 || ext[0].Type != 3 {
		t.Fatalf("extensions after commit: %v", ext)
	}
	res, err = a.g.Commit(mls.CommitOptions{GroupContextExtensions: []mls.Extension{}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res, b, c)
	if ext := b.g.Extensions(); len(ext) != 0 {
		t.Fatalf("extensions after clearing: %v", ext)
	}

	// An extension no member supports is refused when proposed, when
	// committed, and when received.
	unknown := []mls.Extension{{Type: 0xff00, Data: []byte{1}}}
	if _, err := a.g.Propose(mls.GroupContextExtensionsProposal(unknown)); !errors.Is(err, mls.ErrInvalidProposals) {
		t.Errorf("unsupported extension proposed: %v", err)
	}
	if _, err := a.g.Commit(mls.CommitOptions{GroupContextExtensions: unknown}); !errors.Is(err, mls.ErrInvalidProposals) {
		t.Errorf("unsupported extension committed: %v", err)
	}
	// Two GroupContextExtensions in one commit break Section 12.2.
	p, err = b.g.Propose(mls.GroupContextExtensionsProposal([]mls.Extension{senders}))
	if err != nil {
		t.Fatal(err)
	}
	broadcast(t, p, a)
	if _, err := a.g.Commit(mls.CommitOptions{GroupContextExtensions: []mls.Extension{required}}); !errors.Is(err, mls.ErrInvalidProposals) {
		t.Errorf("two group context extensions: %v, want ErrInvalidProposals", err)
	}

	// Branch with extensions: the subgroup starts with them.
	b2 := newMember(t, mls.P256AES128GCMSHA256P256, "b2")
	sub, welcome, err := a.g.Branch(a.id, []byte("sub"), [][]byte{b2.kp.Bytes()}, &mls.SubgroupOptions{
		Extensions: []mls.Extension{required, senders}, UpdatePath: true, ExternalTree: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mls.Join(b2.kp, welcome, trustAll, &mls.JoinOptions{ResumeFrom: []*mls.Group{b.g}}); !errors.Is(err, mls.ErrNoRatchetTree) {
		t.Fatalf("branch with an external tree joined without it: %v", err)
	}
	subB, err := mls.Join(b2.kp, welcome, trustAll, &mls.JoinOptions{ResumeFrom: []*mls.Group{b.g}, RatchetTree: sub.RatchetTree()})
	if err != nil {
		t.Fatal(err)
	}
	agree(t, &member{g: sub}, &member{g: subB})
	if ext := subB.Extensions(); len(ext) != 2 || ext[1].Type != 5 {
		t.Fatalf("branch extensions: %v", ext)
	}
	if _, _, err := a.g.Branch(a.id, []byte("sub2"), nil, &mls.SubgroupOptions{Extensions: unknown}); !errors.Is(err, mls.ErrInvalidLeafNode) {
		t.Errorf("branch with an unsupported extension: %v", err)
	}
}

// G3: external join with PSKs and with resync (Section 12.4.3.2).
func TestExternalJoinPSKAndResync(t *testing.T) {
	for _, cs := range []mls.CipherSuite{mls.X25519AES128GCMSHA256Ed25519, mls.DefaultCipherSuite} {
		t.Run(fmt.Sprintf("suite%d", cs), func(t *testing.T) {
			ms := setupSuite(t, cs, 3)
			a, b, c := ms[0], ms[1], ms[2]
			for _, m := range []*member{a, b} {
				m.g.AddExternalPSK([]byte("psk"), []byte("secret"))
			}
			gi, err := a.g.GroupInfo(true)
			if err != nil {
				t.Fatal(err)
			}
			d := newMember(t, cs, "d")
			psks := &mls.ExternalJoinOptions{ExternalPSKs: map[string][]byte{"psk": []byte("secret")}}
			var commit []byte
			if d.g, commit, err = mls.JoinExternal(d.id, gi, nil, trustAll, psks); err != nil {
				t.Fatal(err)
			}
			if _, err := c.g.Process(commit); !errors.Is(err, mls.ErrUnknownPSK) {
				t.Fatalf("external commit with a PSK the member lacks: %v, want ErrUnknownPSK", err)
			}
			c.g.AddExternalPSK([]byte("psk"), []byte("secret"))
			for _, m := range ms {
				if _, err := m.g.Process(commit); err != nil {
					t.Fatal(err)
				}
			}
			agree(t, a, b, c, d)

			// C lost its state and rejoins with the same identity: its old
			// leaf goes in the same commit.
			gi, err = a.g.GroupInfo(true)
			if err != nil {
				t.Fatal(err)
			}
			stranger := newMember(t, cs, "stranger")
			if _, _, err := mls.JoinExternal(stranger.id, gi, nil, trustAll, &mls.ExternalJoinOptions{Resync: true}); !errors.Is(err, mls.ErrUnknownSender) {
				t.Fatalf("resync without a prior leaf: %v, want ErrUnknownSender", err)
			}
			old := c.g.LeafIndex()
			rejoined, commit, err := mls.JoinExternal(c.id, gi, nil, trustAll, &mls.ExternalJoinOptions{Resync: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []*member{a, b, d} {
				if _, err := m.g.Process(commit); err != nil {
					t.Fatal(err)
				}
			}
			if r, err := c.g.Process(commit); err != nil || !r.Removed {
				t.Fatalf("the old state sees its removal: %+v %v", r, err)
			}
			c.g = rejoined
			agree(t, a, b, c, d)
			if n := len(a.g.Members()); n != 4 {
				t.Fatalf("members after resync: %d", n)
			}
			if c.g.LeafIndex() != old {
				t.Errorf("rejoined at leaf %d, want the freed leaf %d", c.g.LeafIndex(), old)
			}
		})
	}
}

// G4: a ReInit proposal sent on its own and committed by another member
// (Sections 11.2 and 12.1.5), and the getter for its parameters.
func TestReInitProposal(t *testing.T) {
	ms := setup(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	if _, err := a.g.Propose(mls.ReInitProposal([]byte("x"), 0x0999, nil)); !errors.Is(err, mls.ErrBadProposal) {
		t.Fatalf("reinit to an unsupported suite: %v, want ErrBadProposal", err)
	}
	if _, ok := a.g.PendingReInit(); ok {
		t.Fatal("open group reports a reinit")
	}
	exts := []mls.Extension{{Type: 3, Data: []byte{0, 0, 0}}}
	p, err := a.g.Propose(mls.ReInitProposal([]byte("pq"), mls.DefaultCipherSuite, exts))
	if err != nil {
		t.Fatal(err)
	}
	broadcast(t, p, b, c)
	// ReInit must be alone in its commit (Section 12.2).
	if _, err := b.g.Commit(mls.CommitOptions{Remove: []uint32{c.g.LeafIndex()}}); !errors.Is(err, mls.ErrInvalidProposals) {
		t.Fatalf("reinit with another proposal: %v, want ErrInvalidProposals", err)
	}
	res, err := b.g.Commit(mls.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, b, res, a, c)
	for _, m := range ms {
		params, ok := m.g.PendingReInit()
		if !ok || string(params.GroupID) != "pq" || params.CipherSuite != mls.DefaultCipherSuite || params.Version != 1 ||
			len(params.Extensions) != 1 || params.Extensions[0].Type != 3 {
			t.Fatalf("leaf %d: pending reinit %+v %v", m.g.LeafIndex(), params, ok)
		}
		if _, err := m.g.Propose(mls.RemoveProposal(0)); !errors.Is(err, mls.ErrReInitialized) {
			t.Errorf("proposal in a closed group: %v", err)
		}
	}
	params, _ := c.g.PendingReInit()
	nb, na, nc := newMember(t, params.CipherSuite, "b"), newMember(t, params.CipherSuite, "a"), newMember(t, params.CipherSuite, "c")
	if _, _, err := b.g.ReInit(nb.id, nil, &mls.SubgroupOptions{Extensions: exts}); !errors.Is(err, mls.ErrBadProposal) {
		t.Errorf("reinit with its own extensions: %v", err)
	}
	newB, welcome, err := b.g.ReInit(nb.id, [][]byte{na.kp.Bytes(), nc.kp.Bytes()}, &mls.SubgroupOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	newA, err := mls.Join(na.kp, welcome, trustAll, &mls.JoinOptions{ResumeFrom: []*mls.Group{a.g}})
	if err != nil {
		t.Fatal(err)
	}
	agree(t, &member{g: newA}, &member{g: newB})
	if ext := newA.Extensions(); newA.CipherSuite() != mls.DefaultCipherSuite || len(ext) != 1 || ext[0].Type != 3 {
		t.Errorf("reinitialized group: suite %d extensions %v", newA.CipherSuite(), ext)
	}
}

// G5 and the delivery service as external sender (Section 12.1.8.1): the
// group carries the service's key; the service proposes a Remove; the next
// committer includes it. A member that trusts only the service refuses
// another external sender, however it got into the group's extension.
func TestExternalSenderRemove(t *testing.T) {
	ms := setupSuite(t, mls.DefaultCipherSuite, 4)
	a, b, c, d := ms[0], ms[1], ms[2], ms[3]
	ds := newMember(t, mls.DefaultCipherSuite, "ds")
	for _, m := range ms {
		m.g.SetTrustedExternalSenders([][]byte{ds.id.SignaturePublicKey()})
	}
	res, err := a.g.Commit(mls.CommitOptions{GroupContextExtensions: []mls.Extension{
		mls.ExternalSendersExtension([]mls.ExternalSender{ds.id.ExternalSender()}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res, b, c, d)

	// The service removes D (its account was deleted).
	p, err := ds.id.ProposeExternal(a.g.GroupID(), a.g.Epoch(), 0, mls.RemoveProposal(d.g.LeafIndex()))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		r, err := m.g.Process(p)
		if err != nil || !r.Proposal || r.SenderType != 2 {
			t.Fatalf("leaf %d: external proposal: %+v %v", m.g.LeafIndex(), r, err)
		}
	}
	res, err = b.g.Commit(mls.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, b, res, a, c)
	if r, err := d.g.Process(res.Commit); err != nil || !r.Removed {
		t.Fatalf("removed member: %+v %v", r, err)
	}
	agree(t, a, b, c)

	// Proposals the service may not send, and senders it is not.
	if _, err := ds.id.ProposeExternal(a.g.GroupID(), a.g.Epoch(), 0, mls.ExternalPSKProposal(nil)); err != nil {
		t.Fatalf("external psk proposal: %v", err)
	}
	mallory := newMember(t, mls.DefaultCipherSuite, "mallory")
	forged, err := mallory.id.ProposeExternal(a.g.GroupID(), a.g.Epoch(), 0, mls.RemoveProposal(c.g.LeafIndex()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.g.Process(forged); err == nil {
		t.Fatal("external proposal signed by another key accepted")
	}
	// A member adds mallory as a second external sender: members that
	// trust only the service refuse the proposal and the commit.
	both := []mls.Extension{mls.ExternalSendersExtension([]mls.ExternalSender{ds.id.ExternalSender(), mallory.id.ExternalSender()})}
	if _, err := a.g.Propose(mls.GroupContextExtensionsProposal(both)); !errors.Is(err, mls.ErrUntrustedExternalSender) {
		t.Fatalf("proposing an untrusted external sender: %v", err)
	}
	a.g.SetTrustedExternalSenders(nil)
	c.g.SetTrustedExternalSenders(nil)
	res, err = a.g.Commit(mls.CommitOptions{GroupContextExtensions: both})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Process(res.Commit); !errors.Is(err, mls.ErrUntrustedExternalSender) {
		t.Fatalf("commit adding an untrusted external sender: %v, want ErrUntrustedExternalSender", err)
	}
	deliver(t, a, res, c)
	// Mallory is now in the group's extension: only the trust setting
	// keeps a member from accepting its proposals.
	forged, err = mallory.id.ProposeExternal(a.g.GroupID(), a.g.Epoch(), 1, mls.RemoveProposal(0))
	if err != nil {
		t.Fatal(err)
	}
	c.g.SetTrustedExternalSenders([][]byte{ds.id.SignaturePublicKey()})
	if _, err := c.g.Process(forged); !errors.Is(err, mls.ErrUntrustedExternalSender) {
		t.Fatalf("proposal from an untrusted external sender: %v", err)
	}
	c.g.SetTrustedExternalSenders(nil)
	if _, err := c.g.Process(forged); err != nil {
		t.Fatalf("without the trust setting the group's extension rules: %v", err)
	}
	// External senders may not send Update proposals or commits.
	if _, err := ds.id.ProposeExternal(a.g.GroupID(), a.g.Epoch(), 0, mls.Proposal{}); !errors.Is(err, mls.ErrBadProposal) {
		t.Errorf("empty proposal: %v", err)
	}
}

// G5: a joiner asks to be added with a new_member_proposal Add (Section
// 12.1.8), which a member commits.
func TestNewMemberAddProposal(t *testing.T) {
	ms := setup(t, 2)
	a, b := ms[0], ms[1]
	gi, err := a.g.GroupInfo(false)
	if err != nil {
		t.Fatal(err)
	}
	c := newMember(t, mls.P256AES128GCMSHA256P256, "c")
	p, err := mls.NewMemberAddProposal(c.kp, gi)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		r, err := m.g.Process(p)
		if err != nil || r.SenderType != 3 {
			t.Fatalf("new member proposal: %+v %v", r, err)
		}
	}
	res, err := b.g.Commit(mls.CommitOptions{InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, b, res, a)
	if c.g, err = mls.Join(c.kp, res.Welcome, trustAll, nil); err != nil {
		t.Fatal(err)
	}
	agree(t, a, b, c)
	other := newMember(t, mls.X25519AES128GCMSHA256Ed25519, "x")
	if _, err := mls.NewMemberAddProposal(other.kp, gi); !errors.Is(err, mls.ErrNoMatchingKeyPackage) {
		t.Errorf("new member proposal in another suite: %v", err)
	}
	if _, err := mls.NewMemberAddProposal(c.kp, c.kp.Bytes()); !errors.Is(err, mls.ErrUnexpectedMessage) {
		t.Errorf("new member proposal from a key package: %v", err)
	}
}

// ExternalSender bytes round-trip; malformed ones are refused.
func TestExternalSenderEncoding(t *testing.T) {
	s := mls.ExternalSender{SignatureKey: []byte{1, 2, 3}, Identity: []byte("ds")}
	got, err := mls.ParseExternalSender(s.Bytes())
	if err != nil || !bytes.Equal(got.SignatureKey, s.SignatureKey) || string(got.Identity) != "ds" {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {3, 1, 2}, append(s.Bytes(), 0)} {
		if _, err := mls.ParseExternalSender(bad); err == nil {
			t.Errorf("%x parsed", bad)
		}
	}
}

// TestVectorsExternalSenders runs the working group's external_proposals
// vectors (proposals from an external sender and from new members, RFC
// 9420, Section 12.1.8) with the client side of the delivery-service
// policy: the external_senders extension a group ends with re-encodes byte
// for byte from ExternalSenders; a member that trusts exactly those keys
// follows every case; one that trusts another key refuses every case that
// has an external sender, with ErrUntrustedExternalSender. Every eighth
// case runs (three times each), to keep the test short; all of them run
// once in TestVectorsInteropPassive.
func TestVectorsExternalSenders(t *testing.T) {
	var cases []passiveCase
	loadVectors(t, "interop-passive/external_proposals.json", &cases)
	other := newMember(t, mls.X25519AES128GCMSHA256Ed25519, "not the ds").id.SignaturePublicKey()
	withSenders, refused := 0, 0
	for i := 0; i < len(cases); i += 8 {
		c := &cases[i]
		g, err := runPassiveTrusting(c, nil)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		senders, err := g.ExternalSenders()
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(senders) == 0 {
			continue
		}
		withSenders++
		var raw []byte
		for _, e := range g.Extensions() {
			if e.Type == 5 {
				raw = e.Data
			}
		}
		if got := mls.ExternalSendersExtension(senders); !bytes.Equal(got.Data, raw) {
			t.Fatalf("case %d: external_senders re-encoded\n got %x\nwant %x", i, got.Data, raw)
		}
		keys := make([][]byte, len(senders))
		for j, s := range senders {
			keys[j] = s.SignatureKey
		}
		if _, err := runPassiveTrusting(c, keys); err != nil {
			t.Fatalf("case %d trusting its senders: %v", i, err)
		}
		if _, err := runPassiveTrusting(c, [][]byte{other}); !errors.Is(err, mls.ErrUntrustedExternalSender) {
			t.Fatalf("case %d trusting another sender: %v, want ErrUntrustedExternalSender", i, err)
		}
		refused++
	}
	t.Logf("external_proposals.json: %d of %d cases run have an external sender; %d refused with another trusted key", withSenders, (len(cases)+7)/8, refused)
	if withSenders == 0 {
		t.Fatal("no case with an external sender")
	}
}

// FuzzParseExternalSender: anything that parses re-encodes to the same
// bytes; every failure is a malformed input or a non-basic credential.
func FuzzParseExternalSender(f *testing.F) {
	f.Add(mls.ExternalSender{SignatureKey: []byte{1, 2, 3}, Identity: []byte("ds")}.Bytes())
	f.Add([]byte{0, 0, 1, 0})
	f.Add([]byte{0, 0, 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := mls.ParseExternalSender(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) && !errors.Is(err, mls.ErrInvalidProposals) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !bytes.Equal(s.Bytes(), b) {
			t.Fatalf("re-encoding differs: %x -> %x", b, s.Bytes())
		}
	})
}

// What an external sender reads from a GroupInfo without group secrets:
// suite, extensions (its index in external_senders) and the members'
// leaves; and the tree a pending commit leads to, for joiners of a Welcome
// without the tree inline.
func TestExternalSenderViewOfGroupInfo(t *testing.T) {
	ms := setupSuite(t, mls.DefaultCipherSuite, 3)
	ds := newMember(t, mls.DefaultCipherSuite, "ds")
	ext := mls.ExternalSendersExtension([]mls.ExternalSender{ds.id.ExternalSender()})
	res, err := ms[0].g.Commit(mls.CommitOptions{GroupContextExtensions: []mls.Extension{ext}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, ms[0], res, ms[1:]...)
	for _, inline := range []bool{true, false} {
		gi, err := ms[1].g.GroupInfo(inline)
		if err != nil {
			t.Fatal(err)
		}
		info, err := mls.Inspect(gi)
		if err != nil || info.CipherSuite != mls.DefaultCipherSuite || len(info.GroupContextExtensions) != 1 {
			t.Fatalf("inspect group info: %+v %v", info, err)
		}
		senders, err := mls.ParseExternalSendersExtension(info.GroupContextExtensions[0].Data)
		if err != nil || len(senders) != 1 || !bytes.Equal(senders[0].SignatureKey, ds.id.SignaturePublicKey()) {
			t.Fatalf("senders %v %v", senders, err)
		}
		var tree []byte
		if !inline {
			if _, err := mls.TreeMembers(gi, nil); !errors.Is(err, mls.ErrNoRatchetTree) {
				t.Fatalf("members without a tree: %v", err)
			}
			tree = ms[1].g.RatchetTree()
		}
		members, err := mls.TreeMembers(gi, tree)
		if err != nil || len(members) != 3 || string(members[2]) != "2" {
			t.Fatalf("members %v %v", members, err)
		}
	}
	if _, err := mls.TreeMembers(ms[0].kp.Bytes(), nil); !errors.Is(err, mls.ErrUnexpectedMessage) {
		t.Errorf("members of a key package: %v", err)
	}
	if ms[0].g.PendingRatchetTree() != nil {
		t.Fatal("pending tree without a pending commit")
	}
	d := newMember(t, mls.DefaultCipherSuite, "d")
	res, err = ms[0].g.Commit(mls.CommitOptions{Add: [][]byte{d.kp.Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	tree := ms[0].g.PendingRatchetTree()
	deliver(t, ms[0], res, ms[1:]...)
	if d.g, err = mls.Join(d.kp, res.Welcome, trustAll, &mls.JoinOptions{RatchetTree: tree}); err != nil {
		t.Fatal(err)
	}
	agree(t, append(ms, d)...)
	if d.kp.Identity() != d.id || string(d.id.Name()) != "d" {
		t.Error("key package identity")
	}
}

// A reinit into a suite with another hash size: the resumption PSK's nonce
// has the new suite's Nh (RFC 9420, Sections 8.4 and 12.1.4), not the old
// group's. Found by the interop endpoint's scripts (reinit change_ciphersuite
// from suites 4 to 7).
func TestReInitChangesHashSize(t *testing.T) {
	for _, c := range []struct{ from, to mls.CipherSuite }{
		{mls.P256AES128GCMSHA256P256, mls.P521AES256GCMSHA512P521},
		{mls.P384AES256GCMSHA384P384, mls.DefaultCipherSuite},
	} {
		ms := setupSuite(t, c.from, 2)
		p, err := ms[0].g.Propose(mls.ReInitProposal([]byte("next"), c.to, nil))
		if err != nil {
			t.Fatal(err)
		}
		broadcast(t, p, ms[1])
		res, err := ms[1].g.Commit(mls.CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, ms[1], res, ms[0])
		n0, n1 := newMember(t, c.to, "0"), newMember(t, c.to, "1")
		next, welcome, err := ms[0].g.ReInit(n0.id, [][]byte{n1.kp.Bytes()}, nil)
		if err != nil {
			t.Fatalf("reinit from suite %d to %d: %v", c.from, c.to, err)
		}
		joined, err := mls.Join(n1.kp, welcome, trustAll, &mls.JoinOptions{ResumeFrom: []*mls.Group{ms[1].g}})
		if err != nil {
			t.Fatal(err)
		}
		agree(t, &member{g: next}, &member{g: joined})
	}
}

// FuzzTreeMembers: any GroupInfo and tree bytes give members or an error,
// never a panic; a member list only comes from a tree that decodes.
func FuzzTreeMembers(f *testing.F) {
	ms := setupSuite(f, mls.X25519AES128GCMSHA256Ed25519, 2)
	inline, err := ms[0].g.GroupInfo(true)
	if err != nil {
		f.Fatal(err)
	}
	bare, err := ms[0].g.GroupInfo(false)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(inline, []byte(nil))
	f.Add(bare, ms[0].g.RatchetTree())
	f.Add(bare, []byte{0})
	f.Fuzz(func(t *testing.T, gi, tree []byte) {
		members, err := mls.TreeMembers(gi, tree)
		if err == nil && len(members) == 0 {
			t.Fatal("a tree without members decoded")
		}
		if err != nil && members != nil {
			t.Fatal("members returned with an error")
		}
	})
}
