package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAbuseScenario runs the abuse scenario at a tiny scale against the devserver built
// from this tree, with the production rate limits, and checks that each phase carried
// honest traffic, that every attack reached the server and that the report says so; and
// that the jam, 24 envelopes of 256 KiB queued at once for an honest receiver (more than
// the 5 MiB a response may have), loses none of its pair's messages and leaves its inbox
// readable. Before Receive responses were bounded by bytes, that victim's stream failed at
// every reconnect and its pair's messages were never delivered.
func TestAbuseScenario(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "devserver")
	build := exec.Command("go", "build", "-o", bin, "./tools/devserver")
	build.Dir = "../.."
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build the devserver: %v", err)
	}
	f, err := parseAbuseFlags([]string{
		"-server-bin", bin,
		"-pairs", "2", "-inflight", "1", "-warmup", "500ms", "-rounds", "2", "-duration", "2s", "-drain", "20s",
		"-prekeys", "5", "-key-packages", "5",
		"-jam-victims", "1", "-jam-burst", "24", "-jam-size", "262144", "-jam-interval", "1s",
		"-backlog-devices", "2", "-backlog-msgs", "4", "-backlog-size", "65536",
		"-group-recipients", "2", "-welcome-size", "65536", "-group-interval", "500ms",
		"-login-rate", "20", "-drainers", "1", "-drain-rate", "10",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := abuse(ctx, f, &out)
	t.Logf("report:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, ph := range []int{phaseQuiet, phaseAttack} {
		if s := rep.honest.snapshot(ph); s.delivered == 0 {
			t.Errorf("%s phase: no honest message delivered", phaseNames[ph])
		}
		if st := rep.phases[ph]; st.keyBundles.total != f.pairs || st.keyPkgs.total != f.pairs {
			t.Errorf("%s phase: %d bundle and %d key-package probes, want %d each", phaseNames[ph], st.keyBundles.total, st.keyPkgs.total, f.pairs)
		}
		if rep.phases[ph].rssMax == 0 {
			t.Errorf("%s phase: the server's memory was not sampled", phaseNames[ph])
		}
	}
	// The attackers run in a process of their own, whose CPU is measured apart from the
	// honest clients'.
	if rep.phases[phaseAttack].attackerCPU <= 0 {
		t.Errorf("attack phase: attacker process CPU %v, want it measured and positive", rep.phases[phaseAttack].attackerCPU)
	}
	if rep.phases[phaseAttack].serverWait < 0 {
		t.Error("attack phase: the server's run-queue wait was not measured")
	}
	for _, attack := range []string{"1 jam: send", "2 backlog: fill (setup)", "2 backlog: reconnect", "3 groups: create", "3 groups: commit", "8 login: wrong signature", "8 login: valid signature", "10 drain: bundles", "10 drain: key packages"} {
		if sum(rep.calls.get(attack)) == 0 {
			t.Errorf("attack %q made no call that was answered", attack)
		}
		if !strings.Contains(out.String(), attack) {
			t.Errorf("the report does not mention %q", attack)
		}
	}
	if !strings.Contains(out.String(), "honest throughput under attack / quiet: ") {
		t.Error("the report has no throughput ratio")
	}
	if lost := rep.lost(); lost > 0 {
		t.Errorf("%d honest messages were stored and never delivered", lost)
	}
	if rep.left.unreadable > 0 || rep.left.honest > 0 {
		t.Errorf("after the run: %d honest receivers' inboxes unreadable (%v), %d honest messages left in them", rep.left.unreadable, rep.left.err, rep.left.honest)
	}
}

// TestHonestBookkeeping: a message counts once however often it is delivered, frees its
// slot once, and is lost only if the server said it stored it and it never arrived.
func TestHonestBookkeeping(t *testing.T) {
	h := newHonestLoad([]*pair{{}}, 3, honestHeader)
	p := h.pairs[0]
	for id, stored := range map[uint64]bool{1: true, 2: true, 3: false} {
		p.slots <- struct{}{}
		p.sent[id] = &sentMsg{phase: phaseQuiet, stored: stored, slot: true}
	}
	if dup, m := p.delivered(1); dup || m == nil {
		t.Fatalf("first delivery of 1: dup %v, message %v", dup, m)
	}
	if dup, _ := p.delivered(1); !dup {
		t.Fatal("second delivery of 1 is not a duplicate")
	}
	if got := h.inFlight(); got != 2 {
		t.Fatalf("%d in flight after 1 arrived twice, want 2", got)
	}
	p.streamBroke(context.Canceled) // 3 was never answered: its slot comes back
	if got := h.inFlight(); got != 1 {
		t.Fatalf("%d in flight after the stream broke, want 1 (message 2, stored)", got)
	}
	if lost := h.lostByPhase(); lost[phaseQuiet] != 1 {
		t.Fatalf("lost in the quiet phase: %d, want 1 (message 2)", lost[phaseQuiet])
	}
	if n := h.unconfirmed(); n != 1 {
		t.Fatalf("unconfirmed: %d, want 1 (message 3)", n)
	}
}

// TestMain lets the test binary serve as the abuse scenario's attacker process, as the
// loadgen binary does.
func TestMain(m *testing.M) {
	if os.Getenv(attackerEnv) != "" {
		attackerMain()
	}
	os.Exit(m.Run())
}
