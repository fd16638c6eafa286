package observe_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/guardyn/guardyn/libs/observe"
)

// FuzzExtractHeader: whatever a NATS message's headers hold, extracting the trace context
// never panics, and yields either no span context or a valid one that, injected again,
// reads back the same.
func FuzzExtractHeader(f *testing.F) {
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "")
	f.Add("00-00000000000000000000000000000000-b7ad6b7169203331-01", "k=v")
	f.Add("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "")
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", ",,,")
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		h := map[string][]string{"Traceparent": {traceparent}, "Tracestate": {tracestate}}
		sc := trace.SpanContextFromContext(observe.ExtractHeader(context.Background(), h))
		if !sc.IsValid() {
			return
		}
		out := map[string][]string{}
		observe.InjectHeader(trace.ContextWithSpanContext(context.Background(), sc), out)
		again := trace.SpanContextFromContext(observe.ExtractHeader(context.Background(), out))
		if again.TraceID() != sc.TraceID() || again.SpanID() != sc.SpanID() || again.TraceFlags() != sc.TraceFlags() {
			t.Fatalf("%q: extracted %v, round trip %v", traceparent, sc, again)
		}
	})
}
