package client_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/ratelimit"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// callCounter counts unary calls per method and can fail chosen methods.
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
	fail  map[string]int // method -> how many more calls to fail with UNAVAILABLE
}

func newCallCounter() *callCounter {
	return &callCounter{calls: map[string]int{}, fail: map[string]int{}}
}

func (c *callCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	c.calls[method]++
	failing := c.fail[method] > 0
	if failing {
		c.fail[method]--
	}
	c.mu.Unlock()
	if failing {
		return status.Error(codes.Unavailable, "injected failure")
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *callCounter) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

const (
	refreshMethod = "/guardyn.auth.v1.AuthService/RefreshToken"
	loginMethod   = "/guardyn.auth.v1.AuthService/Login"
	ackMethod     = "/guardyn.messaging.v1.MessagingService/AckMessages"
)

// TestTokensRefreshThenRelogin moves the client's clock: near the access token's expiry it
// rotates the refresh token; once the refresh token has expired too it logs in again with
// the identity key. Every send still works.
func TestTokensRefreshThenRelogin(t *testing.T) {
	p := clienttest.Start(t)
	p.Register(t, "alice")
	bob := p.Register(t, "bob")
	calls := newCallCounter()
	var offset atomic.Int64
	cfg := p.Config("alice")
	cfg.Conn = p.Dial(t, grpc.WithUnaryInterceptor(calls.intercept))
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	alice, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	ctx := clienttest.Context(t)

	send := func(text string) {
		t.Helper()
		if _, err := alice.Send(ctx, "bob", text); err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
	}
	send("fresh token")
	if calls.count(refreshMethod) != 0 || calls.count(loginMethod) != 0 {
		t.Fatalf("fresh token refreshed (%d) or logged in (%d)", calls.count(refreshMethod), calls.count(loginMethod))
	}
	offset.Store(int64(14*time.Minute + 30*time.Second))
	send("near expiry")
	if calls.count(refreshMethod) == 0 || calls.count(loginMethod) != 0 {
		t.Fatalf("near expiry: %d refreshes, %d logins; want a refresh and no login", calls.count(refreshMethod), calls.count(loginMethod))
	}
	offset.Store(int64(31 * 24 * time.Hour))
	send("refresh token expired")
	if calls.count(loginMethod) == 0 {
		t.Fatal("expired refresh token: no new login")
	}
	evs := clienttest.Drain(t, bob)
	if len(evs) != 3 {
		t.Fatalf("bob got %d events, want 3: %+v", len(evs), evs)
	}
}

// TestAckLostRedeliveryDropped loses the acknowledgement after a message was decrypted and
// saved: the server delivers it again, and the client drops it by its server id instead of
// showing it twice.
func TestAckLostRedeliveryDropped(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	p.Register(t, "bob")
	calls := newCallCounter()
	calls.fail[ackMethod] = 1
	cfg := p.Config("bob")
	cfg.Conn = p.Dial(t, grpc.WithUnaryInterceptor(calls.intercept))
	bob, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "exactly once on screen"); err != nil {
		t.Fatal(err)
	}
	var shown []string
	err = bob.Listen(ctx, true, func(ev client.Event) {
		if ev.Kind == client.EventMessage {
			shown = append(shown, ev.Body)
		}
	})
	if status.Code(err) != codes.Unavailable || len(shown) != 1 {
		t.Fatalf("first listen: err = %v, shown %q; want the message shown and the ack failure reported", err, shown)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("redelivery produced events %+v; it should be dropped as a duplicate", evs)
	}
	if calls.count(ackMethod) < 2 {
		t.Fatalf("the redelivered message was not acknowledged (%d ack calls)", calls.count(ackMethod))
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("third listen got %+v; the inbox should be empty", evs)
	}
	hist, err := bob.History("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 {
		t.Fatalf("history holds %d entries, want 1", len(hist))
	}
}

// TestPreKeysToppedUp drains most of a device's one-time prekeys through the API; its next
// listen uploads enough to get back to PreKeyBatch of each kind.
func TestPreKeysToppedUp(t *testing.T) {
	p := clienttest.StartWithLimits(t, ratelimit.Policy{}) // no rate limits: the test drains prekeys fast
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	auth := authv1.NewAuthServiceClient(p.Conn)
	bobCtx, err := bob.BearerForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	who, err := bob.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	counts := func() *authv1.PreKeyCounts {
		t.Helper()
		resp, err := auth.GetPreKeyCounts(bobCtx, &authv1.GetPreKeyCountsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetCounts()
	}
	if c := counts(); c.GetOneTimeEcPrekeys() != client.PreKeyBatch || c.GetOneTimeKemPrekeys() != client.PreKeyBatch || !c.GetHasSignedEcPrekey() || !c.GetHasLastResortKemPrekey() {
		t.Fatalf("after registration: %v", c)
	}
	aliceCtx, err := alice.BearerForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const claims = client.PreKeyBatch - client.PreKeyLowWater + 5
	for range claims {
		if _, err := auth.GetKeyBundles(aliceCtx, &authv1.GetKeyBundlesRequest{UserId: who.UserID}); err != nil {
			t.Fatal(err)
		}
	}
	if c := counts(); c.GetOneTimeEcPrekeys() != client.PreKeyBatch-claims {
		t.Fatalf("after %d claims: %v", claims, c)
	}
	clienttest.Drain(t, bob)
	if c := counts(); c.GetOneTimeEcPrekeys() != client.PreKeyBatch || c.GetOneTimeKemPrekeys() != client.PreKeyBatch {
		t.Fatalf("after listen: %v, want %d of each", c, client.PreKeyBatch)
	}
	// The replenished keys work: a new contact can start a session with them.
	carol := p.Register(t, "carol")
	if _, err := carol.Send(ctx, "bob", "using a fresh prekey"); err != nil {
		t.Fatal(err)
	}
	evs := clienttest.Drain(t, bob)
	if len(evs) != 1 || evs[0].Body != "using a fresh prekey" {
		t.Fatalf("bob got %+v", evs)
	}
}

// TestInterruptedRegistrationHeals loses the first prekey upload of a registration: the
// device exists without prekeys, so nobody can message it, until its first listen uploads
// them.
func TestInterruptedRegistrationHeals(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	calls := newCallCounter()
	calls.fail["/guardyn.auth.v1.AuthService/UploadPreKeys"] = 1
	cfg := p.Config("bob")
	cfg.Conn = p.Dial(t, grpc.WithUnaryInterceptor(calls.intercept))
	ctx := clienttest.Context(t)
	bob, err := client.Register(ctx, cfg, "bob", "phone")
	if status.Code(err) != codes.Unavailable || bob == nil {
		t.Fatalf("register with a lost upload: err = %v", err)
	}
	defer bob.Close()
	if _, err := alice.Send(ctx, "bob", "too early"); !errors.Is(err, client.ErrNoPreKeys) {
		t.Fatalf("send to a device without prekeys: err = %v, want ErrNoPreKeys", err)
	}
	clienttest.Drain(t, bob)
	if _, err := alice.Send(ctx, "bob", "now it works"); err != nil {
		t.Fatal(err)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 1 || evs[0].Body != "now it works" {
		t.Fatalf("bob got %+v", evs)
	}
}

// TestSendRepeatedAfterLostAnswer loses the answer of a SendMessage that the server did
// store: the client repeats the identical request, and the recipient sees the message once.
func TestSendRepeatedAfterLostAnswer(t *testing.T) {
	p := clienttest.Start(t)
	p.Register(t, "alice")
	bob := p.Register(t, "bob")
	var lost atomic.Int32
	lost.Store(1)
	var sends atomic.Int32
	loseAnswer := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if method == "/guardyn.messaging.v1.MessagingService/SendMessage" {
			sends.Add(1)
			if err == nil && lost.Add(-1) >= 0 {
				return status.Error(codes.Unavailable, "answer lost")
			}
		}
		return err
	}
	cfg := p.Config("alice")
	cfg.Conn = p.Dial(t, grpc.WithUnaryInterceptor(loseAnswer))
	alice, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.Send(clienttest.Context(t), "bob", "once"); err != nil {
		t.Fatal(err)
	}
	if sends.Load() != 2 {
		t.Fatalf("%d SendMessage calls, want the lost one and its repeat", sends.Load())
	}
	if got := messages(clienttest.Drain(t, bob)); len(got) != 1 || got[0] != "once" {
		t.Fatalf("bob got %q, want the message once", got)
	}
}

// TestGarbageDeliveryDropped: an authenticated account sends bytes that are no envelope.
// The recipient reports them, acknowledges them so they do not come back, and goes on.
func TestGarbageDeliveryDropped(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	actx, err := alice.BearerForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	who, err := bob.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	msg := messagingv1.NewMessagingServiceClient(p.Conn)
	for i, garbage := range [][]byte{{1}, make([]byte, 512), []byte("not an envelope at all")} {
		id := content.NewID()
		if _, err := msg.SendMessage(actx, &messagingv1.SendMessageRequest{
			RecipientUserId: who.UserID, ClientMessageId: id[:],
			Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: garbage}},
		}); err != nil {
			t.Fatalf("garbage %d: %v", i, err)
		}
	}
	if _, err := alice.Send(ctx, "bob", "a real one"); err != nil {
		t.Fatal(err)
	}
	evs := clienttest.Drain(t, bob)
	var bad int
	for _, ev := range evs {
		if ev.Kind == client.EventUndecryptable {
			bad++
		}
	}
	if bad != 3 || !slices.Equal(messages(evs), []string{"a real one"}) {
		t.Fatalf("bob's events = %+v, want 3 undecryptable and the real message", evs)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("garbage came back: %+v", evs)
	}
}

// TestListenerToppedUpWhenPreKeysRunLow drains a listening device's one-time prekeys
// through the API: the server tells it on its Receive stream, and it uploads more while
// still listening, without restarting or polling (before: the low-prekey events were
// stored and never delivered; the pool stayed low until the device's next start).
func TestListenerToppedUpWhenPreKeysRunLow(t *testing.T) {
	p := clienttest.StartWithLimits(t, ratelimit.Policy{})
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	auth := authv1.NewAuthServiceClient(p.Conn)
	bobCtx, err := bob.BearerForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	who, err := bob.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	listening, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var once sync.Once
		done <- bob.Listen(listening, false, func(ev client.Event) {
			if ev.Kind == client.EventBacklogDone {
				once.Do(func() { close(ready) })
			}
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("listen ended: %v", err)
	}
	aliceCtx, err := alice.BearerForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Leave fewer than the server's threshold (services/auth.DefaultLowPreKeyThreshold).
	const serverThreshold = 10
	for range client.PreKeyBatch - serverThreshold + 1 {
		if _, err := auth.GetKeyBundles(aliceCtx, &authv1.GetKeyBundlesRequest{UserId: who.UserID}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := auth.GetPreKeyCounts(bobCtx, &authv1.GetPreKeyCountsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if c := resp.GetCounts(); c.GetOneTimeEcPrekeys() == client.PreKeyBatch && c.GetOneTimeKemPrekeys() == client.PreKeyBatch {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the listening device did not top up its prekeys: %v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("listen: %v", err)
	}
}

// TestListenRetriesWhenRateLimited: a Receive refused with RESOURCE_EXHAUSTED (the device
// reconnected too often, or owes the server for deliveries it dropped unacknowledged) is
// retried with backoff like a dropped connection, and the listener gets its messages.
// Before, Listen gave up on the first refusal.
func TestListenRetriesWhenRateLimited(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	p.Register(t, "bob")
	var refused atomic.Int32
	refuseFirst := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method == "/guardyn.messaging.v1.MessagingService/Receive" && refused.Add(1) == 1 {
			return nil, status.Error(codes.ResourceExhausted, "this device dropped its recent streams with deliveries unacknowledged; retry later")
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
	cfg := p.Config("bob")
	cfg.Conn = p.Dial(t, grpc.WithStreamInterceptor(refuseFirst))
	bob, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "after the wait"); err != nil {
		t.Fatal(err)
	}
	listening, stop := context.WithCancel(ctx)
	defer stop()
	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- bob.Listen(listening, false, func(ev client.Event) {
			if ev.Kind == client.EventMessage {
				got <- ev.Body
			}
		})
	}()
	select {
	case body := <-got:
		if body != "after the wait" {
			t.Fatalf("got %q", body)
		}
	case err := <-done:
		t.Fatalf("listen ended after %d Receive attempts: %v", refused.Load(), err)
	case <-time.After(20 * time.Second):
		t.Fatal("no message within 20 s")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("listen: %v", err)
	}
}
