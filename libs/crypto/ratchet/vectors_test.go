package ratchet

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors.json from the current code")

// vectorFile is testdata/vectors.json: frozen transcripts of our own (there are no official
// Double Ratchet vectors). Every input is explicit: the entropy each party draws (32-byte
// candidate P-256 scalars and 12-byte header nonces, in the order the code reads them) is
// stored as bytes, so the vectors do not depend on the generator that produced them.
type vectorFile struct {
	Comment string          `json:"comment"`
	Cases   []vectorSession `json:"cases"`
}

type vectorSession struct {
	Name             string `json:"name"`
	HeaderEncryption bool   `json:"headerEncryption"`
	SharedKey        string `json:"sharedKey"`
	ResponderKey     string `json:"responderPrivateKey"`
	InitiatorEntropy string `json:"initiatorEntropy"`
	ResponderEntropy string `json:"responderEntropy"`
	// Now is the parties' clock (Unix seconds): it dates skipped keys in the final states.
	Now    int64         `json:"now"`
	Events []vectorEvent `json:"events"`
	// Final states, as SHA-256 of MarshalBinary, pin the state encoding too.
	InitiatorStateSHA256 string `json:"initiatorStateSHA256"`
	ResponderStateSHA256 string `json:"responderStateSHA256"`
}

// vectorEvent is a send (Message is the expected wire message) or a receive (Message is the
// index of the send being delivered, Plaintext what it must decrypt to).
type vectorEvent struct {
	Op        string `json:"op"` // "send" or "receive"
	Party     string `json:"party"`
	Plaintext string `json:"plaintext"`
	AD        string `json:"ad,omitempty"`
	Message   string `json:"message,omitempty"`
	Send      int    `json:"send,omitempty"`
}

// vectorScript is the transcript frozen in the vectors: in-order, skipped, reordered across DH
// ratchet steps and empty messages.
var vectorScript = []struct {
	op    string
	party string
	send  int // for receives: index among sends
}{
	{"send", "initiator", 0}, {"send", "initiator", 0}, {"send", "initiator", 0},
	{"receive", "responder", 0}, {"receive", "responder", 2},
	{"send", "responder", 0}, {"send", "responder", 0},
	{"receive", "initiator", 4}, {"receive", "initiator", 3},
	{"send", "initiator", 0},
	{"receive", "responder", 1}, {"receive", "responder", 5},
	{"send", "responder", 0}, {"send", "responder", 0}, {"send", "responder", 0},
	{"receive", "initiator", 8}, {"receive", "initiator", 6}, {"receive", "initiator", 7},
}

func TestVectors(t *testing.T) {
	path := filepath.Join("testdata", "vectors.json")
	if *updateVectors {
		writeVectors(t, path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file vectorFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Cases) != 2 {
		t.Fatalf("%d cases, want 2", len(file.Cases))
	}
	for _, vc := range file.Cases {
		t.Run(vc.Name, func(t *testing.T) { checkVector(t, vc) })
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkVector(t *testing.T, vc vectorSession) {
	cfg := Config{HeaderEncryption: vc.HeaderEncryption}
	parties := vectorParties(t, cfg, unhex(t, vc.SharedKey), unhex(t, vc.ResponderKey), vc.Now,
		bytes.NewReader(unhex(t, vc.InitiatorEntropy)), bytes.NewReader(unhex(t, vc.ResponderEntropy)))
	var sent [][]byte
	for i, ev := range vc.Events {
		s := parties[ev.Party]
		pt, ad := unhex(t, ev.Plaintext), unhex(t, ev.AD)
		switch ev.Op {
		case "send":
			msg := mustEncrypt(t, s, pt, ad)
			if want := unhex(t, ev.Message); !bytes.Equal(msg, want) {
				t.Fatalf("event %d: message\n got %x\nwant %x", i, msg, want)
			}
			sent = append(sent, msg)
		case "receive":
			mustDecrypt(t, s, sent[ev.Send], ad, pt)
		default:
			t.Fatalf("event %d: unknown op %q", i, ev.Op)
		}
	}
	for party, want := range map[string]string{"initiator": vc.InitiatorStateSHA256, "responder": vc.ResponderStateSHA256} {
		sum := sha256.Sum256(mustMarshal(t, parties[party]))
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s final state SHA-256 = %s, want %s", party, got, want)
		}
	}
}

func vectorParties(t *testing.T, cfg Config, sk, responderKey []byte, now int64, initiatorRand, responderRand io.Reader) map[string]*State {
	t.Helper()
	key, err := ecdh.P256().NewPrivateKey(responderKey)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := newInitiator(sk, key.PublicKey(), cfg, initiatorRand)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := newResponder(sk, key, cfg, responderRand)
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return time.Unix(now, 0) }
	alice.clock, bob.clock = clock, clock
	return map[string]*State{"initiator": alice, "responder": bob}
}

// recordingReader remembers every byte read through it.
type recordingReader struct {
	r   io.Reader
	log []byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.log = append(r.log, p[:n]...)
	return n, err
}

func writeVectors(t *testing.T, path string) {
	file := vectorFile{Comment: "Frozen Guardyn Double Ratchet transcripts (libs/crypto/ratchet, docs/crypto/ratchet.md); " +
		"regenerate only for an intentional wire change: go test -run TestVectors -update"}
	for i, he := range []bool{false, true} {
		stream := testStream(uint64(900 + i))
		sk := make([]byte, 32)
		io.ReadFull(stream, sk)
		key := testKey(t, stream)
		ai := &recordingReader{r: testStream(uint64(910 + i))}
		bi := &recordingReader{r: testStream(uint64(920 + i))}
		cfg := Config{HeaderEncryption: he}
		const now = 1796601600 // 2026-12-07 00:00:00 UTC
		parties := vectorParties(t, cfg, sk, key.Bytes(), now, ai, bi)
		vc := vectorSession{Name: fmt.Sprintf("header-encryption-%t", he), HeaderEncryption: he,
			SharedKey: hex.EncodeToString(sk), ResponderKey: hex.EncodeToString(key.Bytes()), Now: now}
		var sends []vectorEvent
		for _, step := range vectorScript {
			s := parties[step.party]
			if step.op == "send" {
				n := len(sends)
				pt := []byte(fmt.Sprintf("%s message %d", step.party, n))
				if n == 6 {
					pt = nil
				}
				ad := []byte(fmt.Sprintf("ad-%d", n%2))
				ev := vectorEvent{Op: "send", Party: step.party, Plaintext: hex.EncodeToString(pt),
					AD: hex.EncodeToString(ad), Message: hex.EncodeToString(mustEncrypt(t, s, pt, ad))}
				sends = append(sends, ev)
				vc.Events = append(vc.Events, ev)
				continue
			}
			ev := sends[step.send]
			mustDecrypt(t, s, unhex(t, ev.Message), unhex(t, ev.AD), unhex(t, ev.Plaintext))
			vc.Events = append(vc.Events, vectorEvent{Op: "receive", Party: step.party,
				Plaintext: ev.Plaintext, AD: ev.AD, Send: step.send})
		}
		ia := sha256.Sum256(mustMarshal(t, parties["initiator"]))
		rb := sha256.Sum256(mustMarshal(t, parties["responder"]))
		vc.InitiatorStateSHA256, vc.ResponderStateSHA256 = hex.EncodeToString(ia[:]), hex.EncodeToString(rb[:])
		vc.InitiatorEntropy, vc.ResponderEntropy = hex.EncodeToString(ai.log), hex.EncodeToString(bi.log)
		file.Cases = append(file.Cases, vc)
	}
	out, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
