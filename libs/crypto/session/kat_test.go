package session_test

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"testing/cryptotest"

	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
	"github.com/guardyn/guardyn/libs/crypto/session"
)

// Regenerate the frozen vectors (only after a deliberate wire or protocol change) with:
//
//	go test ./libs/crypto/session -run TestKnownAnswers -update-kat
var updateKAT = flag.Bool("update-kat", false, "rewrite testdata/kat.json from the current code")

const katPath = "testdata/kat.json"

// katVector pins the first prekey message and the first reply of a session between the keystest
// devices "alice" and "bob", with every random choice (ephemeral key, ML-KEM encapsulation,
// ratchet keys, header nonces) drawn from cryptotest.SetGlobalRandom(t, 1).
type katVector struct {
	HeaderEncryption bool   `json:"header_encryption"`
	First            string `json:"first_plaintext"`
	FirstMessage     string `json:"first_message"` // hex
	Reply            string `json:"reply_plaintext"`
	ReplyMessage     string `json:"reply_message"` // hex
}

// generateKAT runs the session under the deterministic global random source.
func generateKAT(t *testing.T) []katVector {
	cryptotest.SetGlobalRandom(t, 1)
	var out []katVector
	for _, he := range []bool{false, true} {
		cfg := session.Config{HeaderEncryption: he}
		v := katVector{HeaderEncryption: he, First: "Guardyn known answer: first", Reply: "Guardyn known answer: reply"}
		bob := keystest.NewDevice("bob")
		alice, err := session.Initiate(keystest.Identity("alice"), bob.Bundle, cfg)
		if err != nil {
			t.Fatal(err)
		}
		first := mustEncrypt(t, alice, v.First)
		bobSession, _, err := session.Accept(bob.Identity, bob.Store, first, keystest.Identity("alice").Public(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		v.FirstMessage = hex.EncodeToString(first)
		v.ReplyMessage = hex.EncodeToString(mustEncrypt(t, bobSession, v.Reply))
		out = append(out, v)
	}
	return out
}

// TestKnownAnswers checks two things. First, the frozen messages still decrypt to their
// plaintexts: Bob's keys are derived from labels, so this holds across Go versions and proves
// the wire format and key schedule are unchanged. Second, regenerating them gives the same bytes;
// that also depends on how the Go release draws from the deterministic random source, so after a
// Go upgrade a mismatch there alone (with the first check passing) means regenerate, not a bug.
func TestKnownAnswers(t *testing.T) {
	if *updateKAT {
		out, err := json.MarshalIndent(generateKAT(t), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(katPath, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(katPath)
	if err != nil {
		t.Fatal(err)
	}
	var frozen []katVector
	if err := json.Unmarshal(data, &frozen); err != nil {
		t.Fatal(err)
	}
	if len(frozen) != 2 {
		t.Fatalf("%d vectors, want 2", len(frozen))
	}
	for _, v := range frozen {
		cfg := session.Config{HeaderEncryption: v.HeaderEncryption}
		first, err := hex.DecodeString(v.FirstMessage)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := hex.DecodeString(v.ReplyMessage)
		if err != nil {
			t.Fatal(err)
		}
		bob := keystest.NewDevice("bob")
		bobSession, pt, err := session.Accept(bob.Identity, bob.Store, first, keystest.Identity("alice").Public(), cfg)
		if err != nil || string(pt) != v.First {
			t.Fatalf("header encryption %v: frozen first message: %q, %v", v.HeaderEncryption, pt, err)
		}
		// Bob's reply was made with his random ratchet key; Alice cannot be rebuilt without the
		// same randomness, so the reply is checked by regeneration below.
		if len(reply) == 0 || !bobSession.RemoteIdentity().Equal(keystest.Identity("alice").Public()) {
			t.Fatal("bad vector")
		}
	}
	regenerated := generateKAT(t)
	for i, v := range regenerated {
		if v != frozen[i] {
			t.Errorf("header encryption %v: regenerated messages differ from testdata (see the comment on TestKnownAnswers)", v.HeaderEncryption)
		}
	}
}
