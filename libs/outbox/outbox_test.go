package outbox_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/outbox"
)

const crashDirEnv = "GUARDYN_OUTBOX_CRASH_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir)
		os.Exit(3) // not reached: the child kills itself
	}
	os.Exit(m.Run())
}

// recorder is a Handler that remembers what it was given and fails while failing > 0.
type recorder struct {
	mu      sync.Mutex
	got     map[string][]string
	failing int
	calls   chan string
}

func newRecorder() *recorder {
	return &recorder{got: map[string][]string{}, calls: make(chan string, 1024)}
}

func (r *recorder) handle(_ context.Context, id string, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing > 0 {
		r.failing--
		return errors.New("sink unavailable")
	}
	r.got[id] = append(r.got[id], string(payload))
	r.calls <- id
	return nil
}

func (r *recorder) deliveries(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[id]...)
}

// waitFor blocks until the handler delivered id, or fails the test after a generous
// deadline (the machine is shared).
func (r *recorder) waitFor(t *testing.T, id string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for len(r.deliveries(id)) == 0 {
		select {
		case <-r.calls:
		case <-deadline:
			t.Fatalf("entry %s was never delivered", id)
		}
	}
}

func openStore(t *testing.T, dir string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(filepath.Join(dir, "kv.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newOutbox(t *testing.T, s kv.Store, h outbox.Handler, mod func(*outbox.Config)) *outbox.Outbox {
	t.Helper()
	cfg := outbox.Config{Store: s, Prefix: "test/outbox/", Handle: h, Retry: 10 * time.Millisecond, MaxRetry: 50 * time.Millisecond, Poll: 50 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	o, err := outbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func add(t *testing.T, s kv.Store, o *outbox.Outbox, id, payload string) {
	t.Helper()
	if err := s.Update(context.Background(), func(tx kv.Tx) error { return o.Add(tx, id, []byte(payload)) }); err != nil {
		t.Fatal(err)
	}
}

func length(t *testing.T, o *outbox.Outbox) int {
	t.Helper()
	n, err := o.Len(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func runInBackground(t *testing.T, o *outbox.Outbox) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

func TestDeliverAfterCommitRemovesTheEntry(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	r := newRecorder()
	o := newOutbox(t, s, r.handle, nil)
	add(t, s, o, "e1", "hello")
	if err := o.Deliver(context.Background(), "e1"); err != nil {
		t.Fatal(err)
	}
	if got := r.deliveries("e1"); len(got) != 1 || got[0] != "hello" {
		t.Fatalf("delivered %q, want [hello]", got)
	}
	waitDelivered(t, s, o, "e1")
	// The removal rides on the next transaction that adds an entry, not a commit of its own.
	add(t, s, o, "e2", "next")
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte("test/outbox/"), 0)
		if len(pairs) != 1 || string(pairs[0].Key) != "test/outbox/e2" {
			t.Errorf("outbox holds %d entries after the next Add, want only e2", len(pairs))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// A second Deliver of a delivered entry does nothing.
	if err := o.Deliver(context.Background(), "e1"); err != nil || len(r.deliveries("e1")) != 1 {
		t.Fatalf("second Deliver: %v, deliveries %q", err, r.deliveries("e1"))
	}
	// Run records what no later Add took along.
	if err := o.Deliver(context.Background(), "e2"); err != nil {
		t.Fatal(err)
	}
	runInBackground(t, o)
	waitEmpty(t, o)
	if len(r.deliveries("e2")) != 1 {
		t.Fatalf("e2 delivered %d times", len(r.deliveries("e2")))
	}
}

func TestAddRolledBackWithItsTransactionIsNeverDelivered(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	r := newRecorder()
	o := newOutbox(t, s, r.handle, nil)
	boom := errors.New("state change refused")
	err := s.Update(context.Background(), func(tx kv.Tx) error {
		if err := o.Add(tx, "e1", []byte("x")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v", err)
	}
	if n := length(t, o); n != 0 {
		t.Fatalf("%d entries after a rolled-back Add", n)
	}
}

func TestRunRetriesAFailingHandlerUntilItSucceeds(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	r := newRecorder()
	r.failing = 3
	o := newOutbox(t, s, r.handle, nil)
	add(t, s, o, "e1", "p1")
	add(t, s, o, "e2", "p2")
	if err := o.Deliver(context.Background(), "e1"); err == nil {
		t.Fatal("Deliver with a failing handler returned nil")
	}
	runInBackground(t, o)
	r.waitFor(t, "e1")
	r.waitFor(t, "e2")
	waitEmpty(t, o)
}

// waitEmpty waits until the outbox holds no entry.
func waitEmpty(t *testing.T, o *outbox.Outbox) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for length(t, o) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries still in the outbox", length(t, o))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBadIDsAreRefused(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	o := newOutbox(t, s, newRecorder().handle, nil)
	for _, id := range []string{"", "a b", "tab\t", "nul\x00", strings.Repeat("x", outbox.MaxIDSize+1)} {
		err := s.Update(context.Background(), func(tx kv.Tx) error { return o.Add(tx, id, nil) })
		if !errors.Is(err, outbox.ErrBadID) {
			t.Errorf("Add(%q): %v, want ErrBadID", id, err)
		}
	}
	if n := length(t, o); n != 0 {
		t.Fatalf("bad ids stored %d entries", n)
	}
}

// The crash test: a child process commits an entry and is killed before it delivers
// it; the restarted "process" (this test) delivers it.
func TestEntryCommittedBeforeACrashIsDeliveredAfterRestart(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	committed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		committed = committed || sc.Text() == "committed"
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", err)
	}
	if !committed {
		t.Fatal("child died before it committed")
	}

	s := openStore(t, dir)
	defer s.Close()
	r := newRecorder()
	o := newOutbox(t, s, r.handle, nil)
	runInBackground(t, o)
	r.waitFor(t, "crash-entry")
	if got := r.deliveries("crash-entry"); got[0] != "committed before the crash" {
		t.Fatalf("delivered %q", got)
	}
}

// crashChild commits one entry and kills itself before delivering it.
func crashChild(dir string) {
	s, err := embedded.Open(filepath.Join(dir, "kv.db"), embedded.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	o, err := outbox.New(outbox.Config{Store: s, Prefix: "test/outbox/", Handle: func(context.Context, string, []byte) error {
		panic("the child must die before delivering")
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	err = s.Update(context.Background(), func(tx kv.Tx) error {
		if err := tx.Put([]byte("test/state"), []byte("changed")); err != nil {
			return err
		}
		return o.Add(tx, "crash-entry", []byte("committed before the crash"))
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Stdout.WriteString("committed\n")
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// waitDelivered waits until the outbox recorded id as delivered (the handler returns
// before the record is written).
func waitDelivered(t *testing.T, s kv.Store, o *outbox.Outbox, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pending bool
		if err := s.View(context.Background(), func(tx kv.Tx) error {
			var err error
			pending, err = o.Pending(tx, id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still pending", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// With Linger, a delivered entry stays for a while and a restart delivers it again: the
// sink may have lost its unsynced acknowledgement in the same power loss.
func TestLingeringEntriesAreRedeliveredAfterRestartThenExpire(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	linger := func(c *outbox.Config) { c.Linger, c.Now = 5*time.Minute, clk.Now }

	r1 := newRecorder()
	first := newOutbox(t, s, r1.handle, linger)
	add(t, s, first, "e1", "p1")
	if err := first.Deliver(context.Background(), "e1"); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, s, first, "e1")
	if n := length(t, first); n != 1 {
		t.Fatalf("%d entries after a delivery with Linger, want 1", n)
	}

	// The process restarts: a new Outbox over the same store redelivers e1.
	r2 := newRecorder()
	second := newOutbox(t, s, r2.handle, linger)
	runInBackground(t, second)
	r2.waitFor(t, "e1")
	waitDelivered(t, s, second, "e1")

	// Once Linger has passed, the entry goes and is not delivered again.
	clk.advance(6 * time.Minute)
	second.Kick()
	deadline := time.Now().Add(20 * time.Second)
	for length(t, second) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("lingering entry never expired")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := r2.deliveries("e1"); len(got) != 1 {
		t.Fatalf("e1 delivered %d times after the restart, want 1", len(got))
	}
}

func TestConfigIsChecked(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	h := newRecorder().handle
	for _, cfg := range []outbox.Config{
		{Prefix: "x/", Handle: h},
		{Store: s, Prefix: "x/"},
		{Store: s, Prefix: "x", Handle: h},
		{Store: s, Prefix: "/", Handle: h},
	} {
		if _, err := outbox.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestReAddedIDIsDeliveredAgain: adding a new payload under an id delivered before makes
// it pending again, and it is delivered.
func TestReAddedIDIsDeliveredAgain(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	r := newRecorder()
	o := newOutbox(t, s, r.handle, nil)
	add(t, s, o, "e1", "first")
	if err := o.Deliver(context.Background(), "e1"); err != nil {
		t.Fatal(err)
	}
	add(t, s, o, "e1", "second")
	if err := o.Deliver(context.Background(), "e1"); err != nil {
		t.Fatal(err)
	}
	if got := r.deliveries("e1"); len(got) != 2 || got[1] != "second" {
		t.Fatalf("deliveries %q, want [first second]", got)
	}
}
