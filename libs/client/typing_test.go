package client_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/client"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/clienttest"
)

const ephemeralMethod = "/guardyn.messaging.v1.MessagingService/SendEphemeral"

// TestTypingReplayIgnored replays a captured typing indicator (sealed without a session, so the
// ratchet does not catch replays) at once and again minutes later: neither shows, while fresh
// indicators sent after each replay do.
func TestTypingReplayIgnored(t *testing.T) {
	p := clienttest.Start(t)
	p.Register(t, "alice")
	p.Register(t, "bob").Close()
	ctx := clienttest.Context(t)

	var offset atomic.Int64 // both devices' clocks
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	var mu sync.Mutex
	var captured *messagingv1.SendEphemeralRequest
	capture := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == ephemeralMethod {
			mu.Lock()
			if captured == nil {
				captured = proto.Clone(req.(*messagingv1.SendEphemeralRequest)).(*messagingv1.SendEphemeralRequest)
			}
			mu.Unlock()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	acfg := p.Config("alice")
	acfg.Conn, acfg.Now = p.Dial(t, grpc.WithUnaryInterceptor(capture)), clock
	alice, err := client.Open(acfg)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bcfg := p.Config("bob")
	bcfg.Now = clock
	bob, err := client.Open(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	events := make(chan client.Event, 64)
	lctx, stop := context.WithCancel(ctx)
	listening := make(chan error, 1)
	go func() {
		listening <- bob.Listen(lctx, false, func(ev client.Event) { events <- ev })
	}()
	defer func() {
		stop()
		if err := <-listening; err != nil {
			t.Errorf("listen: %v", err)
		}
	}()
	next := func(kind client.EventKind) client.Event {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Kind == kind {
					return ev
				}
			case <-deadline:
				t.Fatalf("no event of kind %d within 30s", kind)
			}
		}
	}
	next(client.EventBacklogDone)

	// Alice's first send looks bob up; the captured request is her first typing indicator.
	if err := alice.Typing(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	first := next(client.EventTyping)
	actx, err := alice.BearerForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replay := func() {
		t.Helper()
		mu.Lock()
		req := captured
		mu.Unlock()
		if _, err := messagingv1.NewMessagingServiceClient(p.Conn).SendEphemeral(actx, req); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}

	// At once: the same ID again. The fresh indicator sent after it must be the next one shown.
	replay()
	if err := alice.Typing(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if ev := next(client.EventTyping); ev.ID == first.ID {
		t.Fatal("an immediate replay of a typing indicator was shown")
	}
	// Minutes later (both clocks moved): stale.
	offset.Store(int64(3 * time.Minute))
	replay()
	if err := alice.Typing(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if ev := next(client.EventTyping); ev.ID == first.ID {
		t.Fatal("a typing indicator replayed three minutes later was shown")
	}
}
