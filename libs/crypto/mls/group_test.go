package mls_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/secrettree"
	"github.com/guardyn/guardyn/libs/crypto/sframe/mlskeys"
)

// A group keys SFrame for calls directly.
var _ mlskeys.Group = (*mls.Group)(nil)

// trustAll is the Authentication Service of tests whose members are all
// trusted.
func trustAll(uint16, []byte, [][]byte, []byte) error { return nil }

// member is a test participant: identity, key package and group state.
type member struct {
	id *mls.Identity
	kp *mls.KeyPackage
	g  *mls.Group
}

func newMember(t testing.TB, cs mls.CipherSuite, name string) *member {
	t.Helper()
	id, err := mls.NewIdentity(cs, []byte(name))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := id.NewKeyPackage(0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	return &member{id: id, kp: kp}
}

// deliver plays the Delivery Service: the committer merges, every other
// listed member processes the commit.
func deliver(t testing.TB, committer *member, res *mls.CommitResult, others ...*member) {
	t.Helper()
	if err := committer.g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	for _, m := range others {
		if _, err := m.g.Process(res.Commit); err != nil {
			t.Fatalf("process commit at leaf %d: %v", m.g.LeafIndex(), err)
		}
	}
}

// agree checks that all members share the epoch, authenticator and
// exporter output.
func agree(t testing.TB, ms ...*member) {
	t.Helper()
	want, _ := ms[0].g.Export("check", nil, 32)
	for _, m := range ms[1:] {
		got, _ := m.g.Export("check", nil, 32)
		if m.g.Epoch() != ms[0].g.Epoch() || !bytes.Equal(got, want) || !bytes.Equal(m.g.EpochAuthenticator(), ms[0].g.EpochAuthenticator()) {
			t.Fatalf("leaf %d disagrees with leaf %d at epoch %d", m.g.LeafIndex(), ms[0].g.LeafIndex(), ms[0].g.Epoch())
		}
	}
}

func TestGroupLifecycleAllSuites(t *testing.T) {
	for _, cs := range mls.CipherSuites() {
		for _, private := range []bool{false, true} {
			t.Run(fmt.Sprintf("suite%d/private=%v", cs, private), func(t *testing.T) {
				a, b, c, d := newMember(t, cs, "a"), newMember(t, cs, "b"), newMember(t, cs, "c"), newMember(t, cs, "d")
				var err error
				if a.g, err = mls.NewGroup(a.id, []byte("group"), trustAll); err != nil {
					t.Fatal(err)
				}
				a.g.PrivateHandshake = private
				res, err := a.g.Commit(mls.CommitOptions{Add: [][]byte{b.kp.Bytes(), c.kp.Bytes()}})
				if err != nil {
					t.Fatal(err)
				}
				deliver(t, a, res)
				// The tree travels out of band here.
				opts := &mls.JoinOptions{RatchetTree: a.g.RatchetTree()}
				if b.g, err = mls.Join(b.kp, res.Welcome, trustAll, opts); err != nil {
					t.Fatal(err)
				}
				if c.g, err = mls.Join(c.kp, res.Welcome, trustAll, opts); err != nil {
					t.Fatal(err)
				}
				agree(t, a, b, c)

				// B commits an update path; then C adds D with an external PSK.
				b.g.PrivateHandshake = private
				res, err = b.g.Commit(mls.CommitOptions{UpdatePath: true})
				if err != nil {
					t.Fatal(err)
				}
				deliver(t, b, res, a, c)
				agree(t, a, b, c)
				for _, m := range []*member{a, b, c} {
					m.g.AddExternalPSK([]byte("psk"), []byte("shared secret"))
				}
				res, err = c.g.Commit(mls.CommitOptions{Add: [][]byte{d.kp.Bytes()}, ExternalPSKs: [][]byte{[]byte("psk")}, UpdatePath: true, InlineTree: true})
				if err != nil {
					t.Fatal(err)
				}
				deliver(t, c, res, a, b)
				if d.g, err = mls.Join(d.kp, res.Welcome, trustAll, &mls.JoinOptions{ExternalPSKs: map[string][]byte{"psk": []byte("shared secret")}}); err != nil {
					t.Fatal(err)
				}
				agree(t, a, b, c, d)

				// Everyone talks; D removes A.
				for _, from := range []*member{a, b, c, d} {
					msg, err := from.g.ProtectApplication([]byte("hi from "+fmt.Sprint(from.g.LeafIndex())), []byte("ad"))
					if err != nil {
						t.Fatal(err)
					}
					for _, to := range []*member{a, b, c, d} {
						if to == from {
							continue
						}
						r, err := to.g.Process(msg)
						if err != nil || string(r.AuthenticatedData) != "ad" || r.Sender != from.g.LeafIndex() {
							t.Fatalf("message %d->%d: %v", from.g.LeafIndex(), to.g.LeafIndex(), err)
						}
					}
				}
				d.g.PrivateHandshake = private
				res, err = d.g.Commit(mls.CommitOptions{Remove: []uint32{a.g.LeafIndex()}})
				if err != nil {
					t.Fatal(err)
				}
				deliver(t, d, res, b, c)
				r, err := a.g.Process(res.Commit)
				if err != nil || !r.Removed {
					t.Fatalf("removed member: %+v, %v", r, err)
				}
				if _, err := a.g.ProtectApplication([]byte("x"), nil); !errors.Is(err, mls.ErrRemoved) {
					t.Errorf("removed member sends: %v, want ErrRemoved", err)
				}
				agree(t, b, c, d)
				if len(b.g.Members()) != 3 {
					t.Errorf("members after removal: %v", b.g.Members())
				}
			})
		}
	}
}

// setup returns a group of n members (suite 2) that all agree.
func setup(t testing.TB, n int) []*member {
	t.Helper()
	return setupSuite(t, mls.P256AES128GCMSHA256P256, n)
}

// setupSuite is setup in cipher suite cs.
func setupSuite(t testing.TB, cs mls.CipherSuite, n int) []*member {
	t.Helper()
	ms := make([]*member, n)
	var adds [][]byte
	for i := range ms {
		ms[i] = newMember(t, cs, fmt.Sprint(i))
		if i > 0 {
			adds = append(adds, ms[i].kp.Bytes())
		}
	}
	var err error
	if ms[0].g, err = mls.NewGroup(ms[0].id, []byte("g"), trustAll); err != nil {
		t.Fatal(err)
	}
	res, err := ms[0].g.Commit(mls.CommitOptions{Add: adds, InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, ms[0], res)
	for _, m := range ms[1:] {
		if m.g, err = mls.Join(m.kp, res.Welcome, trustAll, nil); err != nil {
			t.Fatal(err)
		}
	}
	return ms
}

// TestCommitConflict follows the Delivery Service rule of one commit per
// epoch: the loser discards its commit and processes the winner's.
func TestCommitConflict(t *testing.T) {
	ms := setup(t, 3)
	win, err := ms[1].g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms[2].g.Commit(mls.CommitOptions{UpdatePath: true}); err != nil {
		t.Fatal(err)
	}
	ms[2].g.DiscardPendingCommit()
	if err := ms[2].g.MergePendingCommit(); !errors.Is(err, mls.ErrNoPendingCommit) {
		t.Fatalf("merge after discard: %v", err)
	}
	deliver(t, ms[1], win, ms[0], ms[2])
	agree(t, ms...)
	if _, err := ms[1].g.Process(win.Commit); !errors.Is(err, mls.ErrWrongEpoch) {
		t.Errorf("commit replayed after merge: %v, want ErrWrongEpoch", err)
	}
}

func TestProcessRejects(t *testing.T) {
	ms := setup(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	msg, err := a.g.ProtectApplication([]byte("once"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Process(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Process(msg); !errors.Is(err, secrettree.ErrGenerationUsed) {
		t.Errorf("replayed message: %v, want ErrGenerationUsed", err)
	}
	tampered := bytes.Clone(msg)
	tampered[len(tampered)-1] ^= 1
	if _, err := c.g.Process(tampered); err == nil {
		t.Error("tampered message accepted")
	}

	res, err := a.g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.g.Process(res.Commit); !errors.Is(err, mls.ErrOwnCommit) {
		t.Errorf("own commit: %v, want ErrOwnCommit", err)
	}
	badCommit := bytes.Clone(res.Commit)
	badCommit[len(badCommit)-10] ^= 1
	if _, err := b.g.Process(badCommit); err == nil {
		t.Error("tampered commit accepted")
	}
	c.g.SetPreviousEpochRetention(0)
	deliver(t, a, res, b, c)
	// Without a retention window, a message from the previous epoch is
	// refused (TestPreviousEpochWindow covers the window).
	if _, err := c.g.Process(msg); !errors.Is(err, mls.ErrWrongEpoch) {
		t.Errorf("old-epoch message: %v, want ErrWrongEpoch", err)
	}

	other := setup(t, 2)
	msg, _ = other[0].g.ProtectApplication([]byte("x"), nil)
	// Same group id "g" but another epoch history: the group check passes and
	// decryption fails.
	if _, err := b.g.Process(msg); err == nil {
		t.Error("message of a foreign group accepted")
	}
	if _, err := b.g.Process([]byte{0, 1, 0, 9}); err == nil {
		t.Error("garbage accepted")
	}

	stranger := newMember(t, mls.P256AES128GCMSHA256P256, "x")
	res, err = a.g.Commit(mls.CommitOptions{Add: [][]byte{newMember(t, mls.P256AES128GCMSHA256P256, "y").kp.Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mls.Join(stranger.kp, res.Welcome, trustAll, nil); !errors.Is(err, mls.ErrNoMatchingKeyPackage) {
		t.Errorf("welcome for another key package: %v", err)
	}
	if _, err := a.g.Commit(mls.CommitOptions{Add: [][]byte{[]byte("junk")}}); err == nil {
		t.Error("junk key package accepted")
	}
	if _, err := a.g.Commit(mls.CommitOptions{Remove: []uint32{a.g.LeafIndex()}}); !errors.Is(err, mls.ErrInvalidProposals) {
		t.Errorf("self removal: %v, want ErrInvalidProposals", err)
	}
	if _, err := a.g.Commit(mls.CommitOptions{Remove: []uint32{99}}); !errors.Is(err, mls.ErrInvalidProposals) {
		t.Errorf("removal of an absent leaf: %v, want ErrInvalidProposals", err)
	}
}

func TestJoinWithoutTree(t *testing.T) {
	a, b := newMember(t, mls.X25519AES128GCMSHA256Ed25519, "a"), newMember(t, mls.X25519AES128GCMSHA256Ed25519, "b")
	var err error
	if a.g, err = mls.NewGroup(a.id, []byte("g"), trustAll); err != nil {
		t.Fatal(err)
	}
	res, err := a.g.Commit(mls.CommitOptions{Add: [][]byte{b.kp.Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mls.Join(b.kp, res.Welcome, trustAll, nil); !errors.Is(err, mls.ErrNoRatchetTree) {
		t.Errorf("join without tree: %v, want ErrNoRatchetTree", err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	ms := setup(t, 3)
	a, b := ms[0], ms[1]
	// Leave some state in flight: a consumed sender generation and a stored
	// external PSK.
	msg, err := a.g.ProtectApplication([]byte("before"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.g.AddExternalPSK([]byte("id"), []byte("secret"))
	state, err := a.g.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := mls.UnmarshalState(state, trustAll)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := restored.MarshalState()
	if !bytes.Equal(again, state) {
		t.Error("state does not re-encode identically")
	}
	a.g = restored
	if _, err := b.g.Process(msg); err != nil {
		t.Fatal(err)
	}
	// The restored sender continues its ratchet instead of reusing keys.
	msg2, err := a.g.ProtectApplication([]byte("after"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := b.g.Process(msg2); err != nil || string(r.Application) != "after" {
		t.Fatalf("after restore: %v", err)
	}
	res, err := a.g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res, b, ms[2])
	agree(t, ms...)

	for i := range state {
		if i%7 != 0 {
			continue
		}
		if _, err := mls.UnmarshalState(state[:i], trustAll); err == nil {
			t.Fatalf("truncated state (%d bytes) accepted", i)
		}
	}
}

func FuzzUnmarshalState(f *testing.F) {
	ms := setup(f, 2)
	state, err := ms[0].g.MarshalState()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(state)
	f.Add(state[:len(state)/2])
	f.Add([]byte{0, 1, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := mls.UnmarshalState(b, trustAll)
		if err != nil {
			return
		}
		if _, err := g.MarshalState(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestExternalJoin(t *testing.T) {
	for _, cs := range []mls.CipherSuite{mls.P256AES128GCMSHA256P256, mls.X448ChaCha20Poly1305SHA512Ed448} {
		a, b := newMember(t, cs, "a"), newMember(t, cs, "b")
		var err error
		if a.g, err = mls.NewGroup(a.id, []byte("ext"), trustAll); err != nil {
			t.Fatal(err)
		}
		res, err := a.g.Commit(mls.CommitOptions{Add: [][]byte{b.kp.Bytes()}, InlineTree: true})
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, a, res)
		if b.g, err = mls.Join(b.kp, res.Welcome, trustAll, nil); err != nil {
			t.Fatal(err)
		}
		gi, err := a.g.GroupInfo(false)
		if err != nil {
			t.Fatal(err)
		}
		c := newMember(t, cs, "c")
		if _, _, err := mls.JoinExternal(c.id, gi, nil, trustAll, nil); !errors.Is(err, mls.ErrNoRatchetTree) {
			t.Fatalf("external join without tree: %v", err)
		}
		var commit []byte
		if c.g, commit, err = mls.JoinExternal(c.id, gi, a.g.RatchetTree(), trustAll, nil); err != nil {
			t.Fatal(err)
		}
		for _, m := range []*member{a, b} {
			r, err := m.g.Process(commit)
			if err != nil || !r.NewEpoch || r.SenderType != 4 {
				t.Fatalf("process external commit: %+v %v", r, err)
			}
		}
		agree(t, a, b, c)
		msg, err := c.g.ProtectApplication([]byte("joined"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := a.g.Process(msg); err != nil || string(r.Application) != "joined" {
			t.Fatalf("message from external joiner: %v", err)
		}
		// The joiner can itself commit, and a GroupInfo with the tree inline
		// works too.
		gi, err = c.g.GroupInfo(true)
		if err != nil {
			t.Fatal(err)
		}
		d := newMember(t, cs, "d")
		if d.g, commit, err = mls.JoinExternal(d.id, gi, nil, trustAll, nil); err != nil {
			t.Fatal(err)
		}
		for _, m := range []*member{a, b, c} {
			if _, err := m.g.Process(commit); err != nil {
				t.Fatal(err)
			}
		}
		agree(t, a, b, c, d)
	}
}

func TestProposalsByReference(t *testing.T) {
	ms := setup(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	d := newMember(t, mls.P256AES128GCMSHA256P256, "d")
	b.g.PrivateHandshake = true
	upd, err := b.g.ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	add, err := c.g.ProposeAdd(d.kp.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*member{a, c} {
		if r, err := m.g.Process(upd); err != nil || !r.Proposal {
			t.Fatalf("update proposal: %v", err)
		}
	}
	for _, m := range []*member{a, b} {
		if r, err := m.g.Process(add); err != nil || !r.Proposal {
			t.Fatalf("add proposal: %v", err)
		}
	}
	// A commits both by reference; B installs its updated leaf key and can
	// still decrypt later paths.
	res, err := a.g.Commit(mls.CommitOptions{InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res, b, c)
	if d.g, err = mls.Join(d.kp, res.Welcome, trustAll, nil); err != nil {
		t.Fatal(err)
	}
	agree(t, a, b, c, d)
	res, err = c.g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, c, res, a, b, d)
	agree(t, a, b, c, d)

	rm, err := d.g.ProposeRemove(a.g.LeafIndex())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*member{b, c} {
		if _, err := m.g.Process(rm); err != nil {
			t.Fatal(err)
		}
	}
	res, err = b.g.Commit(mls.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, b, res, c, d)
	agree(t, b, c, d)
	// A commit naming a proposal the receiver never saw is refused.
	if _, err := b.g.ProposeRemove(d.g.LeafIndex()); err != nil {
		t.Fatal(err)
	}
	res, err = b.g.Commit(mls.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.g.Process(res.Commit); !errors.Is(err, mls.ErrUnknownProposal) {
		t.Errorf("unknown proposal reference: %v, want ErrUnknownProposal", err)
	}
}

func TestBranchAndReInit(t *testing.T) {
	ms := setup(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	// A branches a subgroup with B only.
	b2 := newMember(t, mls.P256AES128GCMSHA256P256, "b2")
	sub, welcome, err := a.g.Branch(a.id, []byte("sub"), [][]byte{b2.kp.Bytes()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mls.Join(b2.kp, welcome, trustAll, nil); !errors.Is(err, mls.ErrUnknownPSK) {
		t.Fatalf("branch join without the old group: %v, want ErrUnknownPSK", err)
	}
	subB, err := mls.Join(b2.kp, welcome, trustAll, &mls.JoinOptions{ResumeFrom: []*mls.Group{b.g}})
	if err != nil {
		t.Fatal(err)
	}
	agree(t, &member{g: sub}, &member{g: subB})

	// B reinitializes the group into suite 1; A and C follow.
	res, err := b.g.CommitReInit([]byte("new"), mls.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, b, res, a, c)
	if _, err := a.g.ProtectApplication([]byte("x"), nil); !errors.Is(err, mls.ErrReInitialized) {
		t.Errorf("message after reinit: %v, want ErrReInitialized", err)
	}
	if _, err := a.g.Commit(mls.CommitOptions{}); !errors.Is(err, mls.ErrReInitialized) {
		t.Errorf("commit after reinit: %v, want ErrReInitialized", err)
	}
	na, nc := newMember(t, mls.X25519AES128GCMSHA256Ed25519, "a"), newMember(t, mls.X25519AES128GCMSHA256Ed25519, "c")
	if _, _, err := b.g.ReInit(a.id, nil, nil); !errors.Is(err, mls.ErrNoMatchingKeyPackage) {
		t.Errorf("reinit with an identity of the old suite: %v", err)
	}
	nb := newMember(t, mls.X25519AES128GCMSHA256Ed25519, "b")
	newB, welcome, err := b.g.ReInit(nb.id, [][]byte{na.kp.Bytes(), nc.kp.Bytes()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	newA, err := mls.Join(na.kp, welcome, trustAll, &mls.JoinOptions{ResumeFrom: []*mls.Group{a.g}})
	if err != nil {
		t.Fatal(err)
	}
	newC, err := mls.Join(nc.kp, welcome, trustAll, &mls.JoinOptions{ResumeFrom: []*mls.Group{c.g}})
	if err != nil {
		t.Fatal(err)
	}
	agree(t, &member{g: newA}, &member{g: newB}, &member{g: newC})
	if newA.CipherSuite() != mls.X25519AES128GCMSHA256Ed25519 || string(newA.GroupID()) != "new" {
		t.Errorf("reinitialized group: suite %d id %q", newA.CipherSuite(), newA.GroupID())
	}
	if _, _, err := newA.ReInit(na.id, nil, nil); !errors.Is(err, mls.ErrNotReInitialized) {
		t.Errorf("reinit of an open group: %v", err)
	}
	// The closed group's state survives a round trip.
	st, err := a.g.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := mls.UnmarshalState(st, trustAll)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restored.ProtectApplication([]byte("x"), nil); !errors.Is(err, mls.ErrReInitialized) {
		t.Errorf("restored closed group: %v", err)
	}
}

// FuzzProcess feeds arbitrary messages to a member: nothing may panic, and
// state only changes through messages that authenticate.
func FuzzProcess(f *testing.F) {
	ms := setup(f, 3)
	msg, _ := ms[0].g.ProtectApplication([]byte("seed"), nil)
	f.Add(msg)
	prop, _ := ms[0].g.ProposeRemove(2)
	f.Add(prop)
	res, err := ms[0].g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(res.Commit)
	ms[0].g.DiscardPendingCommit()
	ms[0].g.PrivateHandshake = true
	if res, err = ms[0].g.Commit(mls.CommitOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Add(res.Commit)
	// The receiver has seen the proposal that the commits reference.
	if _, err := ms[1].g.Process(prop); err != nil {
		f.Fatal(err)
	}
	state, err := ms[1].g.MarshalState()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		g, err := mls.UnmarshalState(state, trustAll)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Process(in); err != nil {
			return
		}
		if _, err := g.MarshalState(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestKeyPackageAndIdentityRestore(t *testing.T) {
	a, b := newMember(t, mls.P384AES256GCMSHA384P384, "a"), newMember(t, mls.P384AES256GCMSHA384P384, "b")
	id, err := mls.IdentityFromKey(mls.P384AES256GCMSHA384P384, []byte("b"), b.id.SignaturePrivateKey())
	if err != nil || !bytes.Equal(id.SignaturePublicKey(), b.id.SignaturePublicKey()) {
		t.Fatalf("identity restore: %v", err)
	}
	initPriv, encPriv := b.kp.PrivateKeys()
	kp, err := mls.RestoreKeyPackage(b.kp.Bytes(), initPriv, encPriv, b.id.SignaturePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mls.RestoreKeyPackage(b.kp.Bytes(), encPriv, initPriv, b.id.SignaturePrivateKey()); !errors.Is(err, mls.ErrInvalidKeyPackage) {
		t.Errorf("swapped private keys: %v, want ErrInvalidKeyPackage", err)
	}
	if a.g, err = mls.NewGroup(a.id, []byte("g"), trustAll); err != nil {
		t.Fatal(err)
	}
	res, err := a.g.Commit(mls.CommitOptions{Add: [][]byte{b.kp.Bytes()}, InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res)
	if b.g, err = mls.Join(kp, res.Welcome, trustAll, nil); err != nil {
		t.Fatal(err)
	}
	agree(t, a, b)
}

func TestKeyPackageLifetime(t *testing.T) {
	a := newMember(t, mls.P256AES128GCMSHA256P256, "a")
	id, _ := mls.NewIdentity(mls.P256AES128GCMSHA256P256, []byte("old"))
	old, err := id.NewKeyPackage(1000, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if a.g, err = mls.NewGroup(a.id, []byte("g"), trustAll); err != nil {
		t.Fatal(err)
	}
	if _, err := a.g.Commit(mls.CommitOptions{Add: [][]byte{old.Bytes()}}); !errors.Is(err, mls.ErrInvalidKeyPackage) {
		t.Errorf("expired key package: %v, want ErrInvalidKeyPackage", err)
	}
	a.g.SetClock(func() time.Time { return time.Unix(1500, 0) })
	if _, err := a.g.Commit(mls.CommitOptions{Add: [][]byte{old.Bytes()}}); err != nil {
		t.Errorf("key package within its lifetime: %v", err)
	}
}

func TestResumptionPSK(t *testing.T) {
	ms := setup(t, 2)
	res, err := ms[0].g.Commit(mls.CommitOptions{ResumptionEpochs: []uint64{1}, UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, ms[0], res, ms[1])
	agree(t, ms...)
	if _, err := ms[0].g.Commit(mls.CommitOptions{ResumptionEpochs: []uint64{99}}); !errors.Is(err, mls.ErrUnknownPSK) {
		t.Errorf("unknown resumption epoch: %v, want ErrUnknownPSK", err)
	}
}

func TestInspect(t *testing.T) {
	ms := setup(t, 2)
	res, err := ms[0].g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	ms[1].g.PrivateHandshake = true
	priv, err := ms[1].g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	app, _ := ms[0].g.ProtectApplication([]byte("x"), nil)
	prop, _ := ms[0].g.ProposeUpdate()
	for _, c := range []struct {
		name             string
		msg              []byte
		commit, proposal bool
		wf               uint16
	}{
		{"public commit", res.Commit, true, false, 1},
		{"private commit", priv.Commit, true, false, 2},
		{"application", app, false, false, 2},
		{"proposal", prop, false, true, 1},
	} {
		info, err := mls.Inspect(c.msg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if info.Commit != c.commit || info.Proposal != c.proposal || info.WireFormat != c.wf || info.Epoch != ms[0].g.Epoch() || string(info.GroupID) != "g" {
			t.Errorf("%s: %+v", c.name, info)
		}
	}
	if _, err := mls.Inspect([]byte{0, 1, 0, 7}); err == nil {
		t.Error("unknown wire format inspected")
	}
}

// TestLargerGroup exercises the parallel paths: a join verifies 40 leaf
// signatures and an update path in a fresh tree encrypts to 39 members.
func TestLargerGroup(t *testing.T) {
	ms := setup(t, 40)
	res, err := ms[0].g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, ms[0], res, ms[1:]...)
	agree(t, ms...)
	res, err = ms[39].g.Commit(mls.CommitOptions{Remove: []uint32{5, 17}})
	if err != nil {
		t.Fatal(err)
	}
	var rest []*member
	for i, m := range ms[:39] {
		if i != 5 && i != 17 {
			rest = append(rest, m)
		}
	}
	deliver(t, ms[39], res, rest...)
	agree(t, append(rest, ms[39])...)
}

// directory is an Authentication Service that admits basic credentials
// with the listed identities.
func directory(names ...string) mls.CredentialValidator {
	return func(ct uint16, identity []byte, _ [][]byte, _ []byte) error {
		for _, n := range names {
			if ct == 1 && string(identity) == n {
				return nil
			}
		}
		return fmt.Errorf("identity %q not in the directory", identity)
	}
}

// setupValidated is setup with every member checking credentials with
// validate.
func setupValidated(t testing.TB, n int, validate mls.CredentialValidator) []*member {
	t.Helper()
	ms := make([]*member, n)
	var adds [][]byte
	for i := range ms {
		ms[i] = newMember(t, mls.P256AES128GCMSHA256P256, fmt.Sprint(i))
		if i > 0 {
			adds = append(adds, ms[i].kp.Bytes())
		}
	}
	var err error
	if ms[0].g, err = mls.NewGroup(ms[0].id, []byte("g"), validate); err != nil {
		t.Fatal(err)
	}
	res, err := ms[0].g.Commit(mls.CommitOptions{Add: adds, InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, ms[0], res)
	for _, m := range ms[1:] {
		if m.g, err = mls.Join(m.kp, res.Welcome, validate, nil); err != nil {
			t.Fatal(err)
		}
	}
	return ms
}

func TestCredentialValidator(t *testing.T) {
	validate := directory("0", "1", "ok")
	ms := setupValidated(t, 2, validate)
	mallory := newMember(t, mls.P256AES128GCMSHA256P256, "mallory")
	if _, err := ms[0].g.Commit(mls.CommitOptions{Add: [][]byte{mallory.kp.Bytes()}}); !errors.Is(err, mls.ErrCredentialRejected) {
		t.Errorf("unknown identity added: %v, want ErrCredentialRejected", err)
	}
	ok := newMember(t, mls.P256AES128GCMSHA256P256, "ok")
	res, err := ms[0].g.Commit(mls.CommitOptions{Add: [][]byte{ok.kp.Bytes()}, InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, ms[0], res, ms[1])
	if _, err := mls.Join(ok.kp, res.Welcome, directory(), nil); !errors.Is(err, mls.ErrCredentialRejected) {
		t.Errorf("join into untrusted tree: %v, want ErrCredentialRejected", err)
	}
	if ok.g, err = mls.Join(ok.kp, res.Welcome, validate, nil); err != nil {
		t.Fatal(err)
	}
	agree(t, ms[0], ms[1], ok)

	// A branch checks credentials with its parent group's validator.
	sub, _, err := ms[0].g.Branch(ms[0].id, []byte("sub"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mallory2 := newMember(t, mls.P256AES128GCMSHA256P256, "mallory")
	if _, err := sub.Commit(mls.CommitOptions{Add: [][]byte{mallory2.kp.Bytes()}}); !errors.Is(err, mls.ErrCredentialRejected) {
		t.Errorf("unknown identity added to a branch: %v, want ErrCredentialRejected", err)
	}
}

// TestConstructorsRequireCredentialValidator checks that no constructor
// of a group that admits members takes a nil validator: such a group would
// accept every credential.
func TestConstructorsRequireCredentialValidator(t *testing.T) {
	ms := setup(t, 2)
	joiner := newMember(t, mls.P256AES128GCMSHA256P256, "2")
	res, err := ms[0].g.Commit(mls.CommitOptions{Add: [][]byte{joiner.kp.Bytes()}, InlineTree: true})
	if err != nil {
		t.Fatal(err)
	}
	state, err := ms[1].g.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	gi, err := ms[1].g.GroupInfo(true)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"NewGroup": func() error { _, err := mls.NewGroup(joiner.id, []byte("x"), nil); return err },
		"Join":     func() error { _, err := mls.Join(joiner.kp, res.Welcome, nil, nil); return err },
		"JoinExternal": func() error {
			_, _, err := mls.JoinExternal(joiner.id, gi, nil, nil, nil)
			return err
		},
		"UnmarshalState": func() error { _, err := mls.UnmarshalState(state, nil); return err },
	} {
		if err := f(); !errors.Is(err, mls.ErrNoCredentialValidator) {
			t.Errorf("%s with a nil validator: %v, want ErrNoCredentialValidator", name, err)
		}
	}
}

// TestRestoredGroupChecksCredentials restores a member's state and has a
// stranger, who holds the GroupInfo as the server does, join by external
// commit: the restored member refuses the stranger's credential. Before,
// a restored group forgot its validator and accepted anyone.
func TestRestoredGroupChecksCredentials(t *testing.T) {
	validate := directory("0", "1")
	ms := setupValidated(t, 2, validate)
	state, err := ms[1].g.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := mls.UnmarshalState(state, validate)
	if err != nil {
		t.Fatal(err)
	}
	gi, err := ms[0].g.GroupInfo(true)
	if err != nil {
		t.Fatal(err)
	}
	mallory := newMember(t, mls.P256AES128GCMSHA256P256, "mallory")
	_, commit, err := mls.JoinExternal(mallory.id, gi, nil, trustAll, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restored.Process(commit); !errors.Is(err, mls.ErrCredentialRejected) {
		t.Fatalf("external commit by a stranger after a restore: %v, want ErrCredentialRejected", err)
	}
	if _, err := ms[0].g.Process(commit); !errors.Is(err, mls.ErrCredentialRejected) {
		t.Fatalf("external commit by a stranger: %v, want ErrCredentialRejected", err)
	}
	// The external joiner checks the members of the tree it joins.
	if _, _, err := mls.JoinExternal(mallory.id, gi, nil, directory("0"), nil); !errors.Is(err, mls.ErrCredentialRejected) {
		t.Fatalf("external join into a tree with an unknown member: %v, want ErrCredentialRejected", err)
	}
	// A listed newcomer gets in, through the restored member too.
	two := newMember(t, mls.P256AES128GCMSHA256P256, "2")
	validate2 := directory("0", "1", "2")
	restored, err = mls.UnmarshalState(state, validate2)
	if err != nil {
		t.Fatal(err)
	}
	if two.g, commit, err = mls.JoinExternal(two.id, gi, nil, validate2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := restored.Process(commit); err != nil {
		t.Fatalf("external commit by a listed member after a restore: %v", err)
	}
}

func TestPreviousEpochWindow(t *testing.T) {
	ms := setup(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	now := time.Unix(1_000_000, 0)
	for _, m := range ms {
		m.g.SetClock(func() time.Time { return now })
	}
	c.g.SetPreviousEpochRetention(10 * time.Second)
	// B sends two messages and a proposal before seeing A's commit.
	late1, _ := b.g.ProtectApplication([]byte("late 1"), []byte("ad"))
	late2, _ := b.g.ProtectApplication([]byte("late 2"), nil)
	b.g.PrivateHandshake = true
	proposal, err := b.g.ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.g.Commit(mls.CommitOptions{Remove: []uint32{b.g.LeafIndex()}, UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res, c)
	old := c.g.Epoch() - 1

	r, err := c.g.Process(late1)
	if err != nil {
		t.Fatalf("late message within the window: %v", err)
	}
	if string(r.Application) != "late 1" || string(r.AuthenticatedData) != "ad" || r.Epoch != old || r.Sender != b.g.LeafIndex() {
		t.Errorf("late message: %q from leaf %d of epoch %d, want \"late 1\" from leaf %d of epoch %d", r.Application, r.Sender, r.Epoch, b.g.LeafIndex(), old)
	}
	if _, err := c.g.Process(late1); !errors.Is(err, secrettree.ErrGenerationUsed) {
		t.Errorf("replayed late message: %v, want ErrGenerationUsed", err)
	}
	if _, err := c.g.Process(proposal); !errors.Is(err, mls.ErrWrongEpoch) {
		t.Errorf("handshake of the previous epoch: %v, want ErrWrongEpoch", err)
	}
	current, _ := a.g.ProtectApplication([]byte("now"), nil)
	if r, err := c.g.Process(current); err != nil || r.Epoch != c.g.Epoch() {
		t.Errorf("current epoch message: %v, epoch %v", err, r)
	}

	now = now.Add(10 * time.Second)
	if _, err := c.g.Process(late2); !errors.Is(err, mls.ErrWrongEpoch) {
		t.Errorf("late message after the window: %v, want ErrWrongEpoch", err)
	}

	// A commit closes the window of the epoch before: only one previous
	// epoch is ever kept.
	msg, _ := a.g.ProtectApplication([]byte("epoch n"), nil)
	for range 2 {
		res, err := a.g.Commit(mls.CommitOptions{UpdatePath: true})
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, a, res, c)
	}
	if _, err := c.g.Process(msg); !errors.Is(err, mls.ErrWrongEpoch) {
		t.Errorf("message two epochs old: %v, want ErrWrongEpoch", err)
	}

	// A removed member's window closes with its removal.
	msg, _ = a.g.ProtectApplication([]byte("before removal"), nil)
	res, err = a.g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res, c)
	res, err = a.g.Commit(mls.CommitOptions{Remove: []uint32{c.g.LeafIndex()}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, a, res, c)
	if _, err := c.g.Process(msg); !errors.Is(err, mls.ErrRemoved) {
		t.Errorf("late message after removal: %v, want ErrRemoved", err)
	}
}

// FuzzProcessPreviousEpoch feeds arbitrary messages to a member whose
// previous-epoch window is open: nothing may panic, and what decrypts from
// the old epoch is application data of that epoch.
func FuzzProcessPreviousEpoch(f *testing.F) {
	ms := setup(f, 3)
	late, _ := ms[2].g.ProtectApplication([]byte("late"), []byte("ad"))
	f.Add(late)
	res, err := ms[0].g.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		f.Fatal(err)
	}
	deliver(f, ms[0], res, ms[1])
	current, _ := ms[0].g.ProtectApplication([]byte("now"), nil)
	f.Add(current)
	f.Add(res.Commit)
	old := ms[1].g.Epoch() - 1
	f.Fuzz(func(t *testing.T, in []byte) {
		g := mls.Fork(ms[1].g)
		r, err := g.Process(in)
		if err != nil {
			return
		}
		if r.Epoch == old && (r.Proposal || r.NewEpoch) {
			t.Fatalf("previous-epoch message accepted as %+v", r)
		}
	})
}
