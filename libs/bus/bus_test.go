package bus

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startBus(t testing.TB, dir string, opts EmbeddedOptions) *Bus {
	t.Helper()
	b, err := StartEmbedded(testCtx(t), dir, opts)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestWakeupsReachOnlyTheirDevice(t *testing.T) {
	b := startBus(t, t.TempDir(), EmbeddedOptions{})
	got := make(chan string, 10)
	sub, err := b.SubscribeWakeups("alice", 1, func(p []byte) { got <- "alice/1:" + string(p) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// A hostile user id must not reach alice's subject via wildcards.
	other, err := b.SubscribeWakeups("alice.*", 1, func(p []byte) { got <- "alice.*/1:" + string(p) })
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unsubscribe()
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	for _, pub := range []struct {
		user   string
		device uint32
	}{{"alice", 2}, {"alice", 1}, {"alice.*", 1}} {
		if err := b.PublishWakeup(pub.user, pub.device, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{"alice/1:m": true, "alice.*/1:m": true}
	for range 2 {
		select {
		case s := <-got:
			if !want[s] {
				t.Errorf("unexpected wake-up %q", s)
			}
			delete(want, s)
		case <-time.After(5 * time.Second):
			t.Fatalf("missing wake-ups %v", want)
		}
	}
	select {
	case s := <-got:
		t.Errorf("extra wake-up %q", s)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestListenerAndConnect(t *testing.T) {
	b := startBus(t, t.TempDir(), EmbeddedOptions{Listen: true})
	url := b.ClientURL()
	if url == "" {
		t.Fatal("no client URL with Listen")
	}
	c, err := Connect(url, nil)
	if err != nil {
		t.Fatalf("Connect(%s): %v", url, err)
	}
	defer c.Close()
	if err := c.Ready(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	sub, err := b.SubscribeWakeups("bob", 3, func(p []byte) { got <- p })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	b.Conn().Flush()
	if err := c.PublishWakeup("bob", 3, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if string(p) != "hi" {
			t.Errorf("payload %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wake-up across TCP connection lost")
	}
	if u := startBus(t, t.TempDir(), EmbeddedOptions{}).ClientURL(); u != "" {
		t.Errorf("server without listener advertises %q", u)
	}
}

func atoi(b []byte) (int, error) { return strconv.Atoi(string(b)) }

func TestJetStreamSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	b, err := StartEmbedded(ctx, dir, EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureAuthEvents(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := b.Publish(ctx, SubjectPrekeysLow, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// First life: acknowledge 0..4, refuse the rest. Refused messages that
	// were in flight at shutdown come back after AckWait.
	cfg := ConsumerConfig{
		Stream: StreamAuthEvents, Durable: "prekeys", FilterSubject: SubjectPrekeysLow,
		AckWait: time.Second, RetryDelay: 100 * time.Millisecond,
	}
	acked := make(chan int, 20)
	c, err := Consume(ctx, b, cfg, atoi, func(_ context.Context, n int) bool {
		if n < 5 {
			acked <- n
			return true
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	for want := range 5 {
		if got := <-acked; got != want {
			t.Fatalf("message %d arrived as %d", want, got)
		}
	}
	c.Stop()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Second life on the same directory: the stream and the consumer's
	// position survived; exactly the refused messages come back.
	b = startBus(t, dir, EmbeddedOptions{})
	if err := b.EnsureAuthEvents(ctx); err != nil {
		t.Fatal(err)
	}
	drained := make(chan int, 20)
	c, err = Consume(ctx, b, cfg, atoi, func(_ context.Context, n int) bool { drained <- n; return true })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	got := map[int]bool{}
	for len(got) < 5 {
		select {
		case n := <-drained:
			if n < 5 {
				t.Errorf("acknowledged message %d delivered again after restart", n)
			}
			got[n] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("after restart got %v, want 5..9", got)
		}
	}
}

func TestConsumerRedeliversRefusedAndTerminatesMalformed(t *testing.T) {
	b := startBus(t, t.TempDir(), EmbeddedOptions{})
	ctx := testCtx(t)
	if err := b.EnsureAuthEvents(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts := map[int]int{}
	done := make(chan int, 10)
	handle := func(_ context.Context, n int) bool {
		mu.Lock()
		defer mu.Unlock()
		attempts[n]++
		if n == 1 && attempts[n] < 3 {
			return false // transient failure: try again
		}
		done <- n
		return true
	}
	c, err := Consume(ctx, b, ConsumerConfig{
		Stream: StreamAuthEvents, Durable: "retry", FilterSubject: SubjectPrekeysLow,
		RetryDelay: 10 * time.Millisecond,
	}, atoi, handle)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for _, payload := range []string{"1", "not a number", "2"} {
		if err := b.Publish(ctx, SubjectPrekeysLow, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	got := map[int]bool{}
	for len(got) < 2 {
		select {
		case n := <-done:
			got[n] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("handled %v, want 1 and 2", got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts[1] != 3 || attempts[2] != 1 {
		t.Errorf("attempts = %v; want 1 delivered 3 times, 2 once", attempts)
	}
	// The malformed message must not be pending or redelivered.
	cons, err := b.JetStream().Consumer(ctx, StreamAuthEvents, "retry")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("consumer has %d unacked and %d pending messages", info.NumAckPending, info.NumPending)
	}
}

func TestKeyValueTTL(t *testing.T) {
	b := startBus(t, t.TempDir(), EmbeddedOptions{})
	ctx := testCtx(t)
	kv, err := b.KeyValue(ctx, "presence", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	key, err := EscapeToken("user@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, []byte("online")); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil || string(e.Value()) != "online" {
		t.Fatalf("get = %v, %v", e, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key still present after TTL: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEscapeToken(t *testing.T) {
	cases := map[string]string{
		"alice":             "alice",
		"01HV-x_Y":          "01HV-x_Y",
		"a.b":               "a=2Eb",
		"*":                 "=2A",
		">":                 "=3E",
		"a b\tc":            "a=20b=09c",
		"=2E":               "=3D2E",
		"é":                 "=C3=A9",
		"guardyn.msg.>":     "guardyn=2Emsg=2E=3E",
		"user@example.org/": "user=40example=2Eorg=2F",
	}
	seen := map[string]string{}
	for in, want := range cases {
		got, err := EscapeToken(in)
		if err != nil || got != want {
			t.Errorf("EscapeToken(%q) = %q, %v; want %q", in, got, err, want)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("%q and %q escape to the same token", prev, in)
		}
		seen[got] = in
	}
	for _, bad := range []string{"", string(make([]byte, MaxTokenLen+1))} {
		if _, err := EscapeToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("EscapeToken(len %d) = %v, want ErrBadToken", len(bad), err)
		}
	}
	if s, err := DeliverSubject("a.b", 7); err != nil || s != "guardyn.msg.deliver.a=2Eb.7" {
		t.Errorf("DeliverSubject = %q, %v", s, err)
	}
	if _, err := DeliverSubject("a", 0); !errors.Is(err, ErrBadToken) {
		t.Errorf("device 0 accepted: %v", err)
	}
	if s, err := DeliverUserSubject("a"); err != nil || s != "guardyn.msg.deliver.a.*" {
		t.Errorf("DeliverUserSubject = %q, %v", s, err)
	}
}

// FuzzEscapeToken checks that escaped tokens never carry subject
// metacharacters and that escaping is injective (decodable).
func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"alice", "a.b", "*", ">", "=", "=2E", "\x00", "é", " "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := EscapeToken(s)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("error %v is not ErrBadToken", err)
			}
			return
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; !isPlain(c) && c != '=' {
				t.Fatalf("token %q has byte %q", tok, c)
			}
		}
		if back := unescape(t, tok); back != s {
			t.Fatalf("EscapeToken(%q) = %q decodes to %q", s, tok, back)
		}
	})
}

func unescape(t *testing.T, tok string) string {
	var out []byte
	for i := 0; i < len(tok); i++ {
		if tok[i] != '=' {
			out = append(out, tok[i])
			continue
		}
		if i+2 >= len(tok) {
			t.Fatalf("truncated escape in %q", tok)
		}
		v, err := strconv.ParseUint(tok[i+1:i+3], 16, 8)
		if err != nil {
			t.Fatalf("bad escape in %q", tok)
		}
		out = append(out, byte(v))
		i += 2
	}
	return string(out)
}

// TestEveryStreamIsBoundedByBytes: a stream without a byte limit is refused, the auth
// event stream and KV buckets have one, and a stream at its limit stays within it.
func TestEveryStreamIsBoundedByBytes(t *testing.T) {
	b := startBus(t, t.TempDir(), EmbeddedOptions{})
	ctx := testCtx(t)
	if err := b.EnsureStream(ctx, jetstream.StreamConfig{Name: "UNBOUNDED", Subjects: []string{"unbounded.>"}}); !errors.Is(err, ErrUnboundedStream) {
		t.Fatalf("stream without MaxBytes: %v, want ErrUnboundedStream", err)
	}
	if err := b.EnsureAuthEvents(ctx); err != nil {
		t.Fatal(err)
	}
	kv, err := b.KeyValue(ctx, "presence", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	kvStatus, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, max := range map[string]int64{
		StreamAuthEvents:           streamMaxBytes(t, b, StreamAuthEvents),
		"KV bucket " + kv.Bucket(): kvStatus.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.MaxBytes,
	} {
		if max <= 0 {
			t.Errorf("%s has no byte limit (MaxBytes %d)", name, max)
		}
	}
	const limit = 64 << 10
	if err := b.EnsureStream(ctx, jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"small.>"}, MaxBytes: limit, Discard: jetstream.DiscardOld}); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 1<<10)
	for range 256 {
		if err := b.Publish(ctx, "small.x", payload); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := b.JetStream().Stream(ctx, "SMALL")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Bytes > limit {
		t.Errorf("stream holds %d bytes, limit %d", info.State.Bytes, limit)
	}
}

func streamMaxBytes(t *testing.T, b *Bus, name string) int64 {
	t.Helper()
	s, err := b.JetStream().Stream(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.Config.MaxBytes
}

// TestConsumerBacksOff: a message the handler keeps refusing is redelivered after waits
// that double from RetryDelay up to MaxRetryDelay, not at a fixed pace.
func TestConsumerBacksOff(t *testing.T) {
	b := startBus(t, t.TempDir(), EmbeddedOptions{})
	ctx := testCtx(t)
	if err := b.EnsureAuthEvents(ctx); err != nil {
		t.Fatal(err)
	}
	const base, limit = 100 * time.Millisecond, 400 * time.Millisecond
	attempts := make(chan time.Time, 20)
	c, err := Consume(ctx, b, ConsumerConfig{
		Stream: StreamAuthEvents, Durable: "backoff", FilterSubject: SubjectPrekeysLow,
		RetryDelay: base, MaxRetryDelay: limit, MaxDeliver: -1,
	}, atoi, func(context.Context, int) bool { attempts <- time.Now(); return false })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if err := b.Publish(ctx, SubjectPrekeysLow, []byte("1")); err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for len(at) < 6 {
		select {
		case a := <-attempts:
			at = append(at, a)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d attempts", len(at))
		}
	}
	for i := 1; i < len(at); i++ {
		want := Backoff(uint64(i), base, limit)
		if gap := at[i].Sub(at[i-1]); gap < want*9/10 {
			t.Errorf("attempt %d came %v after the previous, want at least %v", i+1, gap, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range []time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 30 * time.Second, 100: 30 * time.Second} {
		if want == 0 {
			continue
		}
		if got := Backoff(uint64(n), time.Second, 30*time.Second); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// TestOnlyNewSkipsTheBacklog: a consumer created with OnlyNew sees only what is published
// after it exists, and after a restart resumes where it stopped.
func TestOnlyNewSkipsTheBacklog(t *testing.T) {
	b := startBus(t, t.TempDir(), EmbeddedOptions{})
	ctx := testCtx(t)
	if err := b.EnsureAuthEvents(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := b.Publish(ctx, SubjectPrekeysLow, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cfg := ConsumerConfig{Stream: StreamAuthEvents, Durable: "new", FilterSubject: SubjectPrekeysLow, OnlyNew: true}
	got := make(chan int, 10)
	c, err := Consume(ctx, b, cfg, atoi, func(_ context.Context, n int) bool { got <- n; return true })
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, SubjectPrekeysLow, []byte("10")); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 10 {
		t.Fatalf("first message handled: %d, want 10 (the backlog skipped)", n)
	}
	c.Stop()
	if err := b.Publish(ctx, SubjectPrekeysLow, []byte("11")); err != nil {
		t.Fatal(err)
	}
	c, err = Consume(ctx, b, cfg, atoi, func(_ context.Context, n int) bool { got <- n; return true })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	select {
	case n := <-got:
		if n != 11 {
			t.Fatalf("after the restart: %d, want 11", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the restarted consumer missed what was published while it was stopped")
	}
}
