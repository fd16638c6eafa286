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
