package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Observer is told about the bus's JetStream traffic; libs/observe implements it. Label
// values it gets are subjects and stream and consumer names, all fixed by the code.
type Observer interface {
	// Published records a publish: acknowledged by stream after took, or failed (err).
	Published(subject, stream string, took time.Duration, err error)
	// Consumed records one message handled: lag in the stream before handling (negative
	// when unknown), took to handle, outcome "acked", "retried" or "malformed".
	Consumed(stream, consumer string, lag, took time.Duration, outcome string)
	// TracerProvider traces publishes and handlers.
	TracerProvider() trace.TracerProvider
}

// Observe reports the bus's publishes and consumers to o from now on: publishes carry
// their caller's trace context in W3C traceparent headers, and every Consume handler
// runs in a span continuing the publisher's trace. Call it before publishing or
// consuming.
func (b *Bus) Observe(o Observer) { b.obs = o }

// traceContext is the W3C Trace Context format of the headers (libs/observe reads and
// writes the same).
var traceContext propagation.TraceContext

// tracerName names the spans of this package.
const tracerName = "github.com/guardyn/guardyn/libs/bus"

// startSpan starts a span under ctx's span when that one is recorded.
func (b *Bus) startSpan(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return b.obs.TracerProvider().Tracer(tracerName).Start(ctx, name, trace.WithSpanKind(kind))
}

func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// consuming starts the handling of msg: the context to handle it in (inside a span
// continuing the publisher's trace, when it was traced) and the function that records
// its outcome.
func (b *Bus) consuming(ctx context.Context, cfg ConsumerConfig, msg jetstream.Msg) (context.Context, func(outcome string)) {
	if b.obs == nil {
		return ctx, func(string) {}
	}
	start := time.Now()
	lag := time.Duration(-1)
	if md, err := msg.Metadata(); err == nil {
		lag = start.Sub(md.Timestamp)
	}
	var span trace.Span
	if h := msg.Headers(); len(h) > 0 {
		parent := traceContext.Extract(ctx, propagation.HeaderCarrier(h))
		if trace.SpanContextFromContext(parent).IsSampled() {
			ctx, span = b.obs.TracerProvider().Tracer(tracerName).Start(parent, "bus.consume",
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
					attribute.String("guardyn.stream", cfg.Stream), attribute.String("guardyn.consumer", cfg.Durable)))
		}
	}
	return ctx, func(outcome string) {
		b.obs.Consumed(cfg.Stream, cfg.Durable, lag, time.Since(start), outcome)
		if span != nil {
			if outcome != "acked" {
				span.SetStatus(codes.Error, "")
			}
			span.End()
		}
	}
}
