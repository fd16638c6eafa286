package secrettree

import (
	"bytes"
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
)

func newTestTree(t *testing.T, limits Limits) *Tree {
	t.Helper()
	s, err := suite.New(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	return New(s, bytes.Repeat([]byte{1}, 32), 4, limits)
}

func TestLimits(t *testing.T) {
	tree := newTestTree(t, Limits{MaxForward: 10, Window: 3})
	leaf := treemath.LeafIndex(2)
	if _, err := tree.Get(leaf, Application, 11); !errors.Is(err, ErrGenerationTooFar) {
		t.Fatalf("11 ahead: %v, want ErrGenerationTooFar", err)
	}
	if _, err := tree.Get(leaf, Application, 10); err != nil {
		t.Fatalf("10 ahead: %v", err)
	}
	// Generations 0..9 were skipped; only the last three are kept.
	for g := uint32(0); g < 7; g++ {
		if _, err := tree.Get(leaf, Application, g); !errors.Is(err, ErrGenerationUsed) {
			t.Errorf("generation %d outside the window: %v, want ErrGenerationUsed", g, err)
		}
	}
	for g := uint32(7); g < 10; g++ {
		if _, err := tree.Get(leaf, Application, g); err != nil {
			t.Errorf("generation %d inside the window: %v", g, err)
		}
	}
	if _, err := tree.Get(leaf, Application, 8); !errors.Is(err, ErrGenerationUsed) {
		t.Errorf("replayed generation: %v, want ErrGenerationUsed", err)
	}
}

func TestSendAndReceiveAgree(t *testing.T) {
	sender := newTestTree(t, DefaultLimits)
	receiver := newTestTree(t, DefaultLimits)
	for i := range 5 {
		kn, err := sender.Next(1, Handshake)
		if err != nil {
			t.Fatal(err)
		}
		if kn.Generation != uint32(i) {
			t.Fatalf("generation %d, want %d", kn.Generation, i)
		}
		got, err := receiver.Get(1, Handshake, kn.Generation)
		if err != nil || !bytes.Equal(got.Key, kn.Key) || !bytes.Equal(got.Nonce, kn.Nonce) {
			t.Fatalf("generation %d: keys differ (err %v)", i, err)
		}
	}
	// The other ratchet of the leaf is independent.
	app, err := receiver.Get(1, Application, 0)
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := newTestTree(t, DefaultLimits).Next(1, Handshake)
	if bytes.Equal(app.Key, hs.Key) {
		t.Error("application and handshake keys coincide")
	}
}

// TestFailedOpenConsumesNothing checks that a generation is consumed only
// when the message under it opens: a failed open, at the head of a ratchet
// never used, ahead of it or at a skipped generation, leaves every key
// where it was.
func TestFailedOpenConsumesNothing(t *testing.T) {
	tree := newTestTree(t, Limits{MaxForward: 10, Window: 4})
	want := newTestTree(t, Limits{MaxForward: 10, Window: 4})
	refuse := errors.New("tag mismatch")
	fail := func(*KeyNonce) error { return refuse }
	leaf := treemath.LeafIndex(3)
	for _, g := range []uint32{0, 5, 10} {
		if err := tree.Open(leaf, Application, g, fail); !errors.Is(err, refuse) {
			t.Fatalf("failed open of generation %d: %v", g, err)
		}
	}
	// Generation 5 opens; 0..4 become skipped keys, of which the window
	// keeps 1..4.
	check := func(g uint32) {
		t.Helper()
		got, err := tree.Get(leaf, Application, g)
		if err != nil {
			t.Fatalf("generation %d after failed opens: %v", g, err)
		}
		exp, err := want.Get(leaf, Application, g)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Key, exp.Key) || !bytes.Equal(got.Nonce, exp.Nonce) {
			t.Fatalf("generation %d: key differs from an untouched tree's", g)
		}
	}
	check(5)
	if err := tree.Open(leaf, Application, 2, fail); !errors.Is(err, refuse) {
		t.Fatalf("failed open of skipped generation 2: %v", err)
	}
	check(2)
	check(4)
	if _, err := tree.Get(leaf, Application, 0); !errors.Is(err, ErrGenerationUsed) {
		t.Fatalf("generation 0 outside the window: %v, want ErrGenerationUsed", err)
	}
	if _, err := tree.Get(leaf, Application, 2); !errors.Is(err, ErrGenerationUsed) {
		t.Fatalf("generation 2 twice: %v, want ErrGenerationUsed", err)
	}
	// The sibling leaf, whose path the failed opens walked, is intact.
	sib, err := tree.Get(2, Handshake, 0)
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := want.Get(2, Handshake, 0)
	if !bytes.Equal(sib.Key, exp.Key) {
		t.Fatal("sibling leaf's key differs")
	}
}
