package mls_test

import (
	"fmt"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls"
)

// TestTamperedCopiesDoNotWedge sends every one-byte alteration of a message
// to a member before the genuine message, as a Delivery Service or anyone on
// the path could: each altered copy is refused and changes nothing, and the
// genuine message still processes (RFC 9420, Section 9.2: a key is consumed
// only by a message that decrypts). It covers application messages, commits
// as PrivateMessage and as PublicMessage, and application messages of the
// previous epoch inside the retention window.
func TestTamperedCopiesDoNotWedge(t *testing.T) {
	for _, cs := range []mls.CipherSuite{mls.X25519AES128GCMSHA256Ed25519, mls.P256AES128GCMSHA256P256} {
		t.Run(fmt.Sprint(cs), func(t *testing.T) {
			ms := setupSuite(t, cs, 3)
			a, b, c := ms[0], ms[1], ms[2]
			// flood delivers every one-byte alteration of msg to m and
			// checks that each is refused without a new epoch.
			flood := func(what string, m *member, msg []byte) {
				t.Helper()
				epoch := m.g.Epoch()
				for i := range msg {
					for _, mask := range []byte{0x01, 0x80} {
						bad := append([]byte(nil), msg...)
						bad[i] ^= mask
						if r, err := m.g.Process(bad); err == nil {
							t.Fatalf("%s with byte %d ^ %#x accepted: %+v", what, i, mask, r)
						}
						if m.g.Epoch() != epoch {
							t.Fatalf("%s with byte %d ^ %#x moved the epoch", what, i, mask)
						}
					}
				}
			}

			// Application message, current epoch; then a second one from
			// the same sender, which must not be wedged either.
			for i := range 2 {
				msg, err := a.g.ProtectApplication([]byte(fmt.Sprintf("hello %d", i)), []byte("ad"))
				if err != nil {
					t.Fatal(err)
				}
				flood("application message", b, msg)
				r, err := b.g.Process(msg)
				if err != nil {
					t.Fatalf("genuine application message %d after tampered copies: %v", i, err)
				}
				if string(r.Application) != fmt.Sprintf("hello %d", i) {
					t.Fatalf("application message %d: %q", i, r.Application)
				}
				if _, err := b.g.Process(msg); err == nil {
					t.Fatalf("application message %d replayed", i)
				}
			}

			// Commit as PrivateMessage, and a late application message of
			// the epoch it closes.
			late, err := c.g.ProtectApplication([]byte("late"), nil)
			if err != nil {
				t.Fatal(err)
			}
			a.g.PrivateHandshake = true
			res, err := a.g.Commit(mls.CommitOptions{UpdatePath: true})
			if err != nil {
				t.Fatal(err)
			}
			flood("private commit", b, res.Commit)
			deliver(t, a, res, b, c)
			agree(t, a, b, c)
			flood("late application message", b, late)
			if r, err := b.g.Process(late); err != nil || string(r.Application) != "late" {
				t.Fatalf("genuine late message after tampered copies: %v", err)
			}

			// Commit as PublicMessage.
			a.g.PrivateHandshake = false
			res, err = c.g.Commit(mls.CommitOptions{UpdatePath: true})
			if err != nil {
				t.Fatal(err)
			}
			flood("public commit", b, res.Commit)
			deliver(t, c, res, a, b)
			agree(t, a, b, c)
		})
	}
}

// TestForgedByMemberDoesNotWedge has a member forge, under another member's
// sender key, a message that decrypts but is not signed by that member: the
// key stays unused, and the genuine message still processes.
func TestForgedByMemberDoesNotWedge(t *testing.T) {
	ms := setupSuite(t, mls.X25519AES128GCMSHA256Ed25519, 3)
	a, b, c := ms[0], ms[1], ms[2]
	// c holds the group's secret tree too: from a clone of its state
	// posing as a's leaf, it encrypts under a's next key, signed with its
	// own key.
	forged, err := mls.ForgeApplication(c.g, a.g.LeafIndex(), []byte("forged"))
	if err != nil {
		t.Fatal(err)
	}
	genuine, err := a.g.ProtectApplication([]byte("genuine"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Process(forged); err == nil {
		t.Fatal("forged message accepted")
	}
	r, err := b.g.Process(genuine)
	if err != nil {
		t.Fatalf("genuine message after a forgery: %v", err)
	}
	if string(r.Application) != "genuine" {
		t.Fatalf("got %q", r.Application)
	}
}
