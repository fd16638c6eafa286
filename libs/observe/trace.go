package observe

import (
	"context"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// instrumentation is the tracer name of the spans this package starts.
const instrumentation = "github.com/guardyn/guardyn/libs/observe"

// ServerHandler returns the gRPC stats handler that traces every call of a server, or nil
// when tracing is off (then a server pays nothing for it). It extracts no trace context
// from the call: clients are untrusted, so every call starts a trace of its own, sampled
// at the configured ratio. Health checks are not traced.
func (o *Observer) ServerHandler() stats.Handler {
	if o.sdk == nil {
		return nil
	}
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(o.tracer),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelgrpc.WithFilter(filters.Not(filters.ServiceName("grpc.health.v1.Health"))),
	)
}

// traceContext is the W3C Trace Context format, carried in NATS headers between
// services. A value, not the otel global.
var traceContext propagation.TraceContext

// InjectHeader adds the trace context of ctx's span to h, the headers of a NATS message
// about to be published (nats.Header converts implicitly). Without a span it adds
// nothing.
func InjectHeader(ctx context.Context, h map[string][]string) {
	traceContext.Inject(ctx, propagation.HeaderCarrier(h))
}

// ExtractHeader returns ctx carrying the remote span context found in h, the headers of
// a NATS message received, so that work on its behalf continues the publisher's trace.
func ExtractHeader(ctx context.Context, h map[string][]string) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.HeaderCarrier(h))
}

// startChild starts a span under ctx's span when that one is recorded, with the tracer
// provider that recorded it; otherwise it returns ctx and a nil span, at the cost of one
// context lookup.
//
// The SDK looks the parent up in ctx again, twice (the span and the parent-based
// sampler), and a gRPC stream's context is a chain of a dozen values or more: putting
// the parent found at the head of the chain makes those lookups one step each, where
// they were 7% of the server's CPU when every call was traced (docs/observability.md,
// "Overhead").
func startChild(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(instrumentation).Start(trace.ContextWithSpan(ctx, parent), name,
		trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// AttrPrefix starts the names of the span attributes Guardyn sets itself; they are
// exported, so they must never hold user data (ids of users, devices or messages,
// addresses, bodies, tokens, keys), only coarse facts such as an error reason or a count.
const AttrPrefix = "guardyn."

// exportedAttrs are otel's attributes that may leave the process: what was called and
// how it ended. Everything else is dropped at export, in particular otelgrpc's
// server.address, network.peer.* and client.address.
var exportedAttrs = map[attribute.Key]bool{
	"rpc.system":               true,
	"rpc.system.name":          true,
	"rpc.service":              true,
	"rpc.method":               true,
	"rpc.grpc.status_code":     true,
	"rpc.response.status_code": true,
	"error.type":               true,
	"messaging.system":         true,
	"messaging.operation.name": true,
	"messaging.operation.type": true,
}

// Exported reports whether a span attribute with this key leaves the process.
func Exported(key attribute.Key) bool {
	return exportedAttrs[key] || strings.HasPrefix(string(key), AttrPrefix)
}

func exportedOnly(attrs []attribute.KeyValue) []attribute.KeyValue {
	out := attrs[:0:0]
	for _, a := range attrs {
		if Exported(a.Key) {
			out = append(out, a)
		}
	}
	return out
}

// allowListExporter removes from every span what must not leave the process: attributes
// outside the allow-list (of the span, its events and links) and status descriptions,
// which carry error messages. It is the last step before the wire, so no instrumentation
// added later can export what it should not.
type allowListExporter struct{ sdktrace.SpanExporter }

func (e allowListExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	clean := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		if exportable(s) {
			clean[i] = s // most spans: no copy
			continue
		}
		stub := tracetest.SpanStubFromReadOnlySpan(s)
		stub.Attributes = exportedOnly(stub.Attributes)
		for j := range stub.Events {
			stub.Events[j].Attributes = exportedOnly(stub.Events[j].Attributes)
		}
		for j := range stub.Links {
			stub.Links[j].Attributes = exportedOnly(stub.Links[j].Attributes)
		}
		stub.Status.Description = ""
		clean[i] = stub.Snapshot()
	}
	return e.SpanExporter.ExportSpans(ctx, clean)
}

// exportable reports whether s may leave the process as it is.
func exportable(s sdktrace.ReadOnlySpan) bool {
	if s.Status().Description != "" {
		return false
	}
	for _, a := range s.Attributes() {
		if !Exported(a.Key) {
			return false
		}
	}
	for _, ev := range s.Events() {
		for _, a := range ev.Attributes {
			if !Exported(a.Key) {
				return false
			}
		}
	}
	for _, l := range s.Links() {
		for _, a := range l.Attributes {
			if !Exported(a.Key) {
				return false
			}
		}
	}
	return true
}
