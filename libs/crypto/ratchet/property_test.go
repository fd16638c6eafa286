package ratchet

import (
	"bytes"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"slices"
	"testing"
)

type inFlight struct {
	msg, pt, ad []byte
}

// conversation drives two parties through random sends, reordered and dropped deliveries,
// replays and restarts (marshal, unmarshal), checking every outcome against a simple model:
// each delivered message decrypts to what was sent, each replay is rejected and changes nothing.
type conversation struct {
	t         *testing.T
	rng       *mathrand.Rand
	parties   [2]*State
	flights   [2][]inFlight // flights[p]: sent by p, not yet delivered or dropped
	delivered [2][]inFlight // delivered[p]: received by p, kept for replays
	sent      int
	counts    map[string]int
}

func (cv *conversation) step() {
	p := cv.rng.IntN(2)
	q := 1 - p
	switch r := cv.rng.IntN(100); {
	case r < 45 && len(cv.flights[p]) < 40:
		cv.send(p)
	case r < 88:
		cv.deliver(q)
	case r < 91:
		if len(cv.flights[p]) > 0 {
			i := cv.rng.IntN(len(cv.flights[p]))
			cv.flights[p] = slices.Delete(cv.flights[p], i, i+1)
			cv.counts["dropped"]++
		}
	case r < 97:
		cv.replay(q)
	default:
		cv.restart(p)
	}
}

func (cv *conversation) send(p int) {
	pt := fmt.Appendf(nil, "message %d from %d", cv.sent, p)
	pt = append(pt, bytes.Repeat([]byte{'.'}, cv.rng.IntN(300))...)
	ad := fmt.Appendf(nil, "ad %d", cv.rng.IntN(3))
	msg, err := cv.parties[p].Encrypt(nil, pt, ad)
	if errors.Is(err, ErrNoSendingChain) && p == 1 {
		return // the responder has not heard from the initiator yet
	}
	if err != nil {
		cv.t.Fatalf("send %d: %v", cv.sent, err)
	}
	cv.flights[p] = append(cv.flights[p], inFlight{msg, pt, ad})
	cv.sent++
}

// deliver hands receiver q one of the oldest few messages addressed to it: a bounded reordering
// window keeps every gap under MaxSkip.
func (cv *conversation) deliver(q int) {
	queue := cv.flights[1-q]
	if len(queue) == 0 {
		return
	}
	i := cv.rng.IntN(min(len(queue), 8))
	f := queue[i]
	cv.flights[1-q] = slices.Delete(queue, i, i+1)
	got, err := cv.parties[q].Decrypt(nil, f.msg, f.ad)
	if err != nil {
		cv.t.Fatalf("deliver %q: %v", f.pt[:20], err)
	}
	if !bytes.Equal(got, f.pt) {
		cv.t.Fatalf("deliver: got %q, want %q", got, f.pt)
	}
	cv.delivered[q] = append(cv.delivered[q], f)
	cv.counts["delivered"]++
}

func (cv *conversation) replay(q int) {
	if len(cv.delivered[q]) == 0 {
		return
	}
	f := cv.delivered[q][cv.rng.IntN(len(cv.delivered[q]))]
	mustReject(cv.t, cv.parties[q], f.msg, f.ad, nil)
	_, err := cv.parties[q].Decrypt(nil, f.msg, f.ad)
	if !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrDecrypt) {
		cv.t.Fatalf("replay: err = %v, want ErrDuplicate or ErrDecrypt", err)
	}
	cv.counts["replayed"]++
	if errors.Is(err, ErrDuplicate) {
		cv.counts["replay named duplicate"]++
	}
}

func (cv *conversation) restart(p int) {
	enc := mustMarshal(cv.t, cv.parties[p])
	s, err := Unmarshal(enc)
	if err != nil {
		cv.t.Fatalf("restart: %v", err)
	}
	if again := mustMarshal(cv.t, s); !bytes.Equal(enc, again) {
		cv.t.Fatal("state changed across marshal/unmarshal")
	}
	s.rand = cv.parties[p].rand
	cv.parties[p] = s
	cv.counts["restarts"]++
}

func TestRandomInterleavings(t *testing.T) {
	messages := 10_000
	if testing.Short() {
		messages = 1_000
	}
	bothModes(t, func(t *testing.T, cfg Config) {
		for seed := range uint64(2) {
			alice, bob := newTestPair(t, cfg, 100+seed)
			cv := &conversation{
				t:       t,
				rng:     mathrand.New(mathrand.NewPCG(seed, 7)),
				parties: [2]*State{alice, bob},
				counts:  map[string]int{},
			}
			for cv.sent < messages/2 {
				cv.step()
			}
			for len(cv.flights[0])+len(cv.flights[1]) > 0 {
				cv.deliver(0)
				cv.deliver(1)
			}
			t.Logf("seed %d: %d sent, %v", seed, cv.sent, cv.counts)
			if cv.counts["delivered"] == 0 || cv.counts["replayed"] == 0 || cv.counts["restarts"] == 0 || cv.counts["dropped"] == 0 {
				t.Fatalf("the run did not exercise every action: %v", cv.counts)
			}
		}
	})
}
