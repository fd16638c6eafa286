package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/client"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// live runs Listen in the background and hands its events to the test. It returns once
// the backlog is done, so that everything sent afterwards arrives live.
type live struct {
	events chan client.Event
	stop   func()
}

func listenLive(t *testing.T, c *client.Client) *live {
	t.Helper()
	ctx, cancel := context.WithCancel(clienttest.Context(t))
	l := &live{events: make(chan client.Event, 64)}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var once sync.Once
		done <- c.Listen(ctx, false, func(ev client.Event) {
			if ev.Kind == client.EventBacklogDone {
				once.Do(func() { close(ready) })
				return
			}
			l.events <- ev
		})
	}()
	l.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("live listen: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			l.stop()
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("live listen ended before its backlog: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("live listen never finished its backlog")
	}
	return l
}

// next waits for the next event of kind, skipping others.
func (l *live) next(t *testing.T, kind client.EventKind) client.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-l.events:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event of kind %d within 30s", kind)
		}
	}
}

func messages(evs []client.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind == client.EventMessage {
			out = append(out, ev.Body)
		}
	}
	return out
}

func only(evs []client.Event, kind client.EventKind) []client.Event {
	var out []client.Event
	for _, ev := range evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// Steps 1-2: register, send, live delivery, offline backlog in order, acks delete it.
func TestLiveAndOfflineDelivery(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)

	l := listenLive(t, bob)
	if _, err := alice.Send(ctx, "bob", "are you there?"); err != nil {
		t.Fatal(err)
	}
	ev := l.next(t, client.EventMessage)
	if ev.Body != "are you there?" || ev.From != "alice" || ev.FromDevice != 1 || ev.Outgoing {
		t.Fatalf("live event = %+v", ev)
	}
	l.stop()

	var want []string
	for i := range 8 {
		want = append(want, fmt.Sprintf("offline message %d", i))
		if _, err := alice.Send(ctx, "bob", want[i]); err != nil {
			t.Fatal(err)
		}
	}
	if got := messages(clienttest.Drain(t, bob)); !slices.Equal(got, want) {
		t.Fatalf("backlog = %q, want %q in order", got, want)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("second listen got %+v; acks should have deleted the backlog", evs)
	}
	hist, err := bob.History("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 9 || hist[8].Body != want[7] {
		t.Fatalf("bob's history = %+v", hist)
	}
}

// staleCounter counts STALE_DEVICE_LIST answers on a connection.
type staleCounter struct {
	mu sync.Mutex
	n  int
}

func (s *staleCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if client.Reason(err) == "STALE_DEVICE_LIST" {
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
	}
	return err
}

func (s *staleCounter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Step 3: a second device linked from the first gets replies and copies of what its
// account sends; a send with a stale device list is fixed and retried.
func TestLinkedDeviceAndStaleDeviceList(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	p.Register(t, "bob")
	ctx := clienttest.Context(t)

	var stale staleCounter
	cfg := p.Config("bob")
	cfg.Conn = p.Dial(t, grpc.WithUnaryInterceptor(stale.intercept))
	bob, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	if _, err := alice.Send(ctx, "bob", "hi bob"); err != nil {
		t.Fatal(err)
	}
	if got := messages(clienttest.Drain(t, bob)); !slices.Equal(got, []string{"hi bob"}) {
		t.Fatalf("bob got %q", got)
	}
	alice2 := p.Link(t, alice, "alice-laptop")
	devs, err := alice.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || !devs[0].Current || devs[1].Name != "alice-laptop" {
		t.Fatalf("alice's devices = %+v", devs)
	}

	// bob only knows alice's first device: the server answers STALE_DEVICE_LIST and the
	// client adds the new device and retries.
	if _, err := bob.Send(ctx, "alice", "reply to both"); err != nil {
		t.Fatal(err)
	}
	if stale.count() == 0 {
		t.Fatal("bob's send never hit STALE_DEVICE_LIST; the retry path went untested")
	}
	for name, c := range map[string]*client.Client{"alice": alice, "alice2": alice2} {
		evs := clienttest.Drain(t, c)
		if got := messages(evs); !slices.Contains(got, "reply to both") {
			t.Fatalf("%s got %q (events %+v)", name, got, evs)
		}
	}

	// A message alice sends from her laptop shows on her phone as hers.
	if _, err := alice2.Send(ctx, "bob", "from the laptop"); err != nil {
		t.Fatal(err)
	}
	evs := clienttest.Drain(t, alice)
	copies := only(evs, client.EventMessage)
	if len(copies) != 1 || !copies[0].Outgoing || copies[0].Peer != "bob" || copies[0].FromDevice != 2 || copies[0].Body != "from the laptop" {
		t.Fatalf("alice's phone got %+v, want the laptop's message to bob as a copy", evs)
	}
	if got := messages(clienttest.Drain(t, bob)); !slices.Equal(got, []string{"from the laptop"}) {
		t.Fatalf("bob got %q", got)
	}

	// Removing the laptop makes bob's device list stale the other way: extra device 2.
	before := stale.count()
	if err := alice.RemoveDevice(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, "alice", "laptop gone"); err != nil {
		t.Fatal(err)
	}
	if stale.count() == before {
		t.Fatal("send after the device removal did not hit STALE_DEVICE_LIST")
	}
	if got := messages(clienttest.Drain(t, alice)); !slices.Equal(got, []string{"laptop gone"}) {
		t.Fatalf("alice got %q", got)
	}
}

// envelopeRecorder keeps the sealed envelopes sent through a connection, by method.
type envelopeRecorder struct {
	mu        sync.Mutex
	stored    [][]byte
	ephemeral [][]byte
}

func (r *envelopeRecorder) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	r.mu.Lock()
	switch m := req.(type) {
	case *messagingv1.SendMessageRequest:
		for _, e := range m.GetEnvelopes() {
			r.stored = append(r.stored, bytes.Clone(e.GetSealedEnvelope()))
		}
	case *messagingv1.SendEphemeralRequest:
		for _, e := range m.GetEnvelopes() {
			r.ephemeral = append(r.ephemeral, bytes.Clone(e.GetSealedEnvelope()))
		}
	}
	r.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Step 4: receipts come back end-to-end encrypted; typing indicators reach online devices
// through SendEphemeral and are never stored.
func TestReceiptsAndTyping(t *testing.T) {
	p := clienttest.Start(t)
	p.Register(t, "alice")
	bob := p.Register(t, "bob")
	ctx := clienttest.Context(t)

	var rec envelopeRecorder
	cfg := p.Config("alice")
	cfg.Conn = p.Dial(t, grpc.WithUnaryInterceptor(rec.intercept))
	alice, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()

	id, err := alice.Send(ctx, "bob", "did you get this?")
	if err != nil {
		t.Fatal(err)
	}
	// Positive control for the scan below: a stored envelope is found in the data dir while
	// it waits in bob's inbox.
	if len(rec.stored) != 1 || !fileContains(t, p.DataDir, rec.stored[0][len(rec.stored[0])-64:]) {
		t.Fatalf("the stored envelope (%d recorded) is not in the server's data dir; the scan cannot be trusted", len(rec.stored))
	}
	if got := messages(clienttest.Drain(t, bob)); !slices.Equal(got, []string{"did you get this?"}) {
		t.Fatalf("bob got %q", got)
	}
	receipts := only(clienttest.Drain(t, alice), client.EventReceipt)
	if len(receipts) != 1 || receipts[0].Ref != id || receipts[0].From != "bob" || receipts[0].FromDevice != 1 {
		t.Fatalf("alice's receipts = %+v, want one from bob for %s", receipts, id)
	}

	l := listenLive(t, bob)
	if err := alice.Typing(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if ev := l.next(t, client.EventTyping); ev.From != "alice" || ev.FromDevice != 1 {
		t.Fatalf("typing event = %+v", ev)
	}
	l.stop()
	if len(rec.ephemeral) != 1 {
		t.Fatalf("typing sent %d ephemeral envelopes, want 1", len(rec.ephemeral))
	}
	for _, env := range rec.ephemeral {
		if fileContains(t, p.DataDir, env[len(env)-64:]) {
			t.Fatal("a typing envelope was written to the server's data dir")
		}
	}
	// Offline now: a typing indicator goes nowhere and nothing waits for bob.
	if err := alice.Typing(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("bob's backlog after typing = %+v, want nothing stored", evs)
	}
}

// Step 5: safety numbers match on both sides; a changed identity is reported loudly,
// blocks sends and holds incoming messages until trust.
func TestSafetyNumbersAndIdentityChange(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "first contact"); err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, bob)

	na, err := alice.SafetyNumber(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	nb, err := bob.SafetyNumber(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if na.Number != nb.Number || len(na.Number) != 71 || na.Changed != nil || nb.Changed != nil {
		t.Fatalf("safety numbers: alice sees %q (%v), bob sees %q (%v)", na.Number, na.Changed, nb.Number, nb.Changed)
	}

	// bob loses everything and registers again under the same name: device 1 of "bob" now
	// has another identity key.
	if err := bob.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	newBob := p.Register(t, "bob")
	// (p.Register reuses the profile directory "bob", which DeleteAccount emptied.)

	_, err = alice.Send(ctx, "bob", "are you still you?")
	var changed *client.IdentityChangedError
	if !errors.As(err, &changed) || changed.Username != "bob" || !changed.AccountReplaced {
		t.Fatalf("send to the re-registered bob: err = %v, want an IdentityChangedError", err)
	}
	if _, err := newBob.Send(ctx, "alice", "it is me, new phone"); err != nil {
		t.Fatal(err)
	}
	evs := clienttest.Drain(t, alice)
	if len(only(evs, client.EventIdentityChanged)) != 1 || len(messages(evs)) != 0 {
		t.Fatalf("alice's events = %+v, want one identity warning and the message held", evs)
	}
	if _, err := alice.Send(ctx, "bob", "still refusing?"); !errors.As(err, &changed) {
		t.Fatalf("second send: err = %v, want IdentityChangedError until trust", err)
	}

	na, err = alice.SafetyNumber(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	nb, err = newBob.SafetyNumber(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if na.Number != nb.Number || na.Changed == nil {
		t.Fatalf("after the change: alice %q (changed %v), bob %q", na.Number, na.Changed, nb.Number)
	}
	if err := alice.Trust(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Trust(ctx, "bob"); !errors.Is(err, client.ErrNothingToTrust) {
		t.Fatalf("second trust: err = %v, want ErrNothingToTrust", err)
	}
	if got := messages(clienttest.Drain(t, alice)); !slices.Equal(got, []string{"it is me, new phone"}) {
		t.Fatalf("after trust alice got %q, want the held message", got)
	}
	if _, err := alice.Send(ctx, "bob", "welcome back"); err != nil {
		t.Fatal(err)
	}
	if got := messages(clienttest.Drain(t, newBob)); !slices.Equal(got, []string{"welcome back"}) {
		t.Fatalf("new bob got %q", got)
	}
}

// Promise 1: the server never holds plaintext, and profiles are encrypted at rest. Every
// byte of every file of the server and of the clients is scanned for a marker planted in
// the messages.
func TestNoPlaintextAtRest(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	alice2 := p.Link(t, alice, "alice-laptop")
	ctx := clienttest.Context(t)
	const marker = "PLAINTEXT-MARKER-7f3a9c1e"

	for i := range 3 {
		if _, err := alice.Send(ctx, "bob", fmt.Sprintf("%s alice %d", marker, i)); err != nil {
			t.Fatal(err)
		}
	}
	clienttest.Drain(t, bob) // delivered, logged by bob, acknowledged
	if _, err := bob.Send(ctx, "alice", marker+" reply"); err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, alice)
	// Left in the inboxes on purpose: bob's next message and alice2's copies.
	if _, err := alice2.Send(ctx, "bob", marker+" from the laptop"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Typing(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	hist, err := bob.History("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 || !bytes.Contains([]byte(hist[0].Body), []byte(marker)) {
		t.Fatalf("bob's history = %+v; the marker should be readable by the client", hist)
	}
	// A file full of the marker, sent and fetched: its ciphertext stays in the server's
	// blob store (and its name and key only inside the messages).
	sendMarkedFile(t, alice, bob, marker)

	// Positive control: the scan finds what the server may legitimately see.
	if !fileContains(t, p.DataDir, []byte("alice")) {
		t.Fatal("username not found in the server's data dir: the scan is broken")
	}
	for _, sub := range []string{"kv.db", "msgstore", "nats", "keys", "blobs"} {
		if _, err := os.Stat(filepath.Join(p.DataDir, sub)); err != nil {
			t.Errorf("expected server data %s: %v", sub, err)
		}
	}
	if hits := scan(t, p.DataDir, []byte(marker)); len(hits) > 0 {
		t.Fatalf("plaintext marker found in server files: %v", hits)
	}
	for _, needle := range [][]byte{[]byte(marker), []byte("alice"), []byte("bob")} {
		if hits := scan(t, p.Profiles, needle); len(hits) > 0 {
			t.Fatalf("%q found in client profile files (not encrypted at rest): %v", needle, hits)
		}
	}
}

// scan returns the files under root that contain needle.
func scan(t *testing.T, root string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	return hits
}

func fileContains(t *testing.T, root string, needle []byte) bool {
	return len(scan(t, root, needle)) > 0
}

// Two processes on one profile: bob listens in one terminal and sends from another while
// alice writes to him. Every cycle holds the profile lock, so the sessions both processes
// update stay consistent and every message decrypts on both sides.
func TestListenAndSendShareProfile(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	p.Register(t, "bob")
	ctx := clienttest.Context(t)
	open := func() *client.Client {
		c, err := client.Open(p.Config("bob"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	bobListening, bobSending := open(), open()
	if _, err := alice.Send(ctx, "bob", "start"); err != nil {
		t.Fatal(err)
	}
	l := listenLive(t, bobListening)
	if ev := l.next(t, client.EventMessage); ev.Body != "start" {
		t.Fatalf("first message = %+v", ev)
	}
	const n = 8
	var wg sync.WaitGroup
	for _, w := range []struct {
		from *client.Client
		to   string
	}{{alice, "bob"}, {bobSending, "alice"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if _, err := w.from.Send(ctx, w.to, fmt.Sprintf("to %s %d", w.to, i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for i := range n {
		ev := l.next(t, client.EventMessage)
		if want := fmt.Sprintf("to bob %d", i); ev.Body != want {
			t.Fatalf("bob's live message %d = %q, want %q", i, ev.Body, want)
		}
	}
	l.stop()
	for _, ev := range clienttest.Drain(t, alice) {
		if ev.Kind == client.EventUndecryptable {
			t.Fatalf("alice could not decrypt: %v", ev.Err)
		}
	}
	hist, err := alice.History("bob")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range hist {
		if !e.Outgoing && e.Kind == "text" {
			got = append(got, e.Body)
		}
	}
	if len(got) != n {
		t.Fatalf("alice received %d of bob's %d messages: %q", len(got), n, got)
	}
}

// sendCounter counts SendMessage calls on a connection.
type sendCounter struct{ n atomic.Int32 }

func (s *sendCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == "/guardyn.messaging.v1.MessagingService/SendMessage" {
		s.n.Add(1)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// A backlog is acknowledged with one receipt per sender, not one per message; the sender
// still sees a receipt event for each of its messages.
func TestBacklogAnsweredWithOneReceipt(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	p.Register(t, "bob")
	ctx := clienttest.Context(t)
	var sends sendCounter
	cfg := p.Config("bob")
	cfg.Conn = p.Dial(t, grpc.WithUnaryInterceptor(sends.intercept))
	bob, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	var ids []string
	for i := range 6 {
		id, err := alice.Send(ctx, "bob", fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id.String())
	}
	if got := messages(clienttest.Drain(t, bob)); len(got) != 6 {
		t.Fatalf("bob got %q", got)
	}
	if n := sends.n.Load(); n != 1 {
		t.Fatalf("bob sent %d messages to answer the backlog, want 1 receipt", n)
	}
	var refs []string
	for _, ev := range only(clienttest.Drain(t, alice), client.EventReceipt) {
		refs = append(refs, ev.Ref.String())
	}
	if !slices.Equal(refs, ids) {
		t.Fatalf("receipt refs = %q, want %q", refs, ids)
	}
}
