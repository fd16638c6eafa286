package bus

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// recorder is an Observer keeping what it was told, with a recording tracer provider.
type recorder struct {
	spans *tracetest.SpanRecorder
	tp    *sdktrace.TracerProvider

	mu        sync.Mutex
	published []string
	consumed  []string
}

func newRecorder() *recorder {
	r := &recorder{spans: tracetest.NewSpanRecorder()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	return r
}

func (r *recorder) Published(subject, stream string, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, subject+" "+stream)
}

func (r *recorder) Consumed(stream, consumer string, lag, took time.Duration, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.consumed = append(r.consumed, stream+" "+consumer+" "+outcome)
}

func (r *recorder) TracerProvider() trace.TracerProvider { return r.tp }

// TestConsumerContinuesPublishersTrace: an event published inside a traced call is
// handled inside a span of the same trace, and both ends are measured.
func TestConsumerContinuesPublishersTrace(t *testing.T) {
	b := startBus(t, t.TempDir(), EmbeddedOptions{})
	rec := newRecorder()
	b.Observe(rec)
	ctx := testCtx(t)
	if err := b.EnsureStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	handled := make(chan trace.SpanContext, 1)
	c, err := Consume(ctx, b, ConsumerConfig{Stream: "T", Durable: "d"},
		func(b []byte) (string, error) { return string(b), nil },
		func(ctx context.Context, _ string) bool {
			handled <- trace.SpanContextFromContext(ctx)
			return true
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	callCtx, call := rec.tp.Tracer("test").Start(ctx, "call")
	if err := b.Publish(callCtx, "t.x", []byte("v")); err != nil {
		t.Fatal(err)
	}
	call.End()
	var got trace.SpanContext
	select {
	case got = <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("not consumed")
	}
	if got.TraceID() != call.SpanContext().TraceID() {
		t.Errorf("handler runs in trace %s; the publisher's is %s", got.TraceID(), call.SpanContext().TraceID())
	}
	// The consumer records its outcome right after the handler returns.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec.mu.Lock()
		pub, con := strings.Join(rec.published, ","), strings.Join(rec.consumed, ",")
		rec.mu.Unlock()
		if pub == "t.x T" && con == "T d acked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("observed publishes %q, consumed %q; want \"t.x T\", \"T d acked\"", pub, con)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
