package messaging

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

type oneDevice struct{}

func (oneDevice) Devices(context.Context, string) ([]uint32, bool, error) {
	return []uint32{1}, true, nil
}

// lockedSink is the server side of a Receive stream, counting what the pump sends.
type lockedSink struct {
	grpc.BidiStreamingServer[messagingv1.ReceiveRequest, messagingv1.ReceiveResponse]
	mu   sync.Mutex
	sent int
}

func (s *lockedSink) Send(*messagingv1.ReceiveResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent++
	return nil
}

// newTracedInstance is one messaging instance on the shared NATS connection of b.
func newTracedInstance(t *testing.T, b *bus.Bus) *Server {
	t.Helper()
	dir := t.TempDir()
	groups, err := kvembedded.Open(filepath.Join(dir, kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { groups.Close() })
	inboxes, err := msgembedded.Open(filepath.Join(dir, msgembedded.DirName), msgembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inboxes.Close() })
	s, err := New(Config{Inboxes: inboxes, Groups: groups, Directory: oneDevice{}, Conn: b.Conn(), StreamRecheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// attachStream opens bob's device 1 stream on s, inside its own traced Receive span.
func attachStream(t *testing.T, s *Server, tp trace.TracerProvider) *lockedSink {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ctx, span := tp.Tracer("test").Start(ctx, "Receive")
	rs := &lockedSink{}
	st := &liveStream{
		s: s, out: rs.Send, in: func() (*messagingv1.ReceiveRequest, error) { return rs.Recv() }, ctx: ctx, caller: authn.Principal{UserID: "bob", DeviceID: 1}, inbox: inboxOf("bob", 1),
		events: make(chan *eventsv1.LiveEvent, eventBuffer), kick: make(chan struct{}, 1),
		superseded: make(chan struct{}), stop: make(chan struct{}), fatal: make(chan error, 1),
	}
	key := inboxKey{"bob", 1}
	s.hub.attach(key, st)
	t.Cleanup(func() {
		s.hub.detach(key, st)
		st.mu.Lock()
		st.closed = true
		st.mu.Unlock()
		close(st.stop)
		st.pumped.Wait()
		span.End()
		cancel()
	})
	return rs
}

// TestDeliveryContinuesTheSendersTrace: a delivery sent inside a traced call reaches the
// recipient's stream as a messaging.deliver span of the sender's trace, ended once
// written, whether the stream is on this instance or on another one reached over NATS.
func TestDeliveryContinuesTheSendersTrace(t *testing.T) {
	for _, remote := range []bool{false, true} {
		name := map[bool]string{false: "same instance", true: "over NATS"}[remote]
		t.Run(name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			b, err := bus.StartEmbedded(context.Background(), t.TempDir(), bus.EmbeddedOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			receiver := newTracedInstance(t, b)
			sender := receiver
			if remote {
				sender = newTracedInstance(t, b)
			}
			rs := attachStream(t, receiver, tp)
			if err := b.Conn().Flush(); err != nil {
				t.Fatal(err)
			}

			ctx, send := tp.Tracer("test").Start(context.Background(), "SendMessage")
			// Ephemeral: never stored, so the stream takes no acknowledgements.
			sender.wake(ctx, "bob", 1, &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_EPHEMERAL, Payload: []byte("x")})
			send.End()

			deadline := time.Now().Add(10 * time.Second)
			for {
				var deliver sdktrace.ReadOnlySpan
				for _, s := range rec.Ended() {
					if s.Name() == "messaging.deliver" {
						deliver = s
					}
				}
				if deliver != nil {
					if deliver.SpanContext().TraceID() != send.SpanContext().TraceID() || deliver.Parent().SpanID() != send.SpanContext().SpanID() {
						t.Fatalf("deliver span in trace %s under %s; the send is %s/%s", deliver.SpanContext().TraceID(), deliver.Parent().SpanID(),
							send.SpanContext().TraceID(), send.SpanContext().SpanID())
					}
					rs.mu.Lock()
					sent := rs.sent
					rs.mu.Unlock()
					if sent != 1 {
						t.Fatalf("the deliver span ended with %d responses written", sent)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("no messaging.deliver span ended")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
