package mls_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// TestInspectWelcome: a Delivery Service reads from a Welcome the KeyPackageRef of
// every member it adds, one per KeyPackage the commit added, and nothing else.
func TestInspectWelcome(t *testing.T) {
	ms := setup(t, 2)
	joiners := []*member{newMember(t, mls.P256AES128GCMSHA256P256, "j1"), newMember(t, mls.P256AES128GCMSHA256P256, "j2")}
	res, err := ms[0].g.Commit(mls.CommitOptions{Add: [][]byte{joiners[0].kp.Bytes(), joiners[1].kp.Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := mls.Inspect(res.Welcome)
	if err != nil {
		t.Fatal(err)
	}
	if info.WireFormat != 3 || len(info.NewMembers) != 2 || info.GroupID != nil || info.Commit || info.Proposal {
		t.Fatalf("Welcome inspected as %+v", info)
	}
	if bytes.Equal(info.NewMembers[0], info.NewMembers[1]) || len(info.NewMembers[0]) == 0 {
		t.Fatalf("KeyPackageRefs %x", info.NewMembers)
	}
	commit, err := mls.Inspect(res.Commit)
	if err != nil || commit.NewMembers != nil {
		t.Fatalf("a commit has NewMembers %x (%v)", commit.NewMembers, err)
	}
}

// FuzzInspect: Inspect reads untrusted bytes for the Delivery Service; it must not panic
// and must fail with a malformed-message error, never half-fill its result.
func FuzzInspect(f *testing.F) {
	ms := setup(f, 2)
	j := newMember(f, mls.P256AES128GCMSHA256P256, "j")
	ms[1].g.PrivateHandshake = true
	res, err := ms[1].g.Commit(mls.CommitOptions{Add: [][]byte{j.kp.Bytes()}})
	if err != nil {
		f.Fatal(err)
	}
	app, _ := ms[0].g.ProtectApplication([]byte("x"), nil)
	prop, _ := ms[0].g.ProposeUpdate()
	for _, seed := range [][]byte{res.Commit, res.Welcome, app, prop, j.kp.Bytes(), {0, 1, 0, 7}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := mls.Inspect(b)
		if err != nil {
			if info != nil {
				t.Fatalf("error %v with a result", err)
			}
			if !errors.Is(err, wire.ErrMalformed) && !errors.Is(err, mls.ErrUnexpectedMessage) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrUnexpectedMessage", err)
			}
			return
		}
		if info.WireFormat < 1 || info.WireFormat > 5 || (info.Commit && info.Proposal) {
			t.Fatalf("inspected %+v", info)
		}
	})
}
