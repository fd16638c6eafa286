package observe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/msgstore"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/observe/observetest"
)

var _ bus.Observer = (*observe.Observer)(nil)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tracing starts a collector and an Observer exporting every call to it, logging to the
// returned buffer at debug level.
func tracing(t *testing.T) (*observe.Observer, *observetest.Collector, *bytes.Buffer) {
	t.Helper()
	col, err := observetest.Start(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(col.Close)
	var logs bytes.Buffer
	obs, err := observe.New(testCtx(t), observe.Config{
		Service: "test", LogLevel: slog.LevelDebug, LogWriter: &logs,
		OTLPEndpoint: col.Addr(), OTLPInsecure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return obs, col, &logs
}

// echo serves a unary method that logs inside the call and returns its input.
func echo(t *testing.T, obs *observe.Observer) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(grpc.StatsHandler(obs.ServerHandler()))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "guardyn.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			obs.Logger().InfoContext(ctx, "echo")
			return in, nil
		}}},
	}, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestExportedSpansCarryNoAddresses: a traced call reaches the collector with its method
// and status, and without the peer's or the server's address, which otelgrpc records.
// A client's traceparent does not choose the trace.
func TestExportedSpansCarryNoAddresses(t *testing.T) {
	// As in a process where some library set otel's global propagator, which otelgrpc
	// would use by default.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
	obs, col, logs := tracing(t)
	conn := echo(t, obs)
	const clientTrace = "0af7651916cd43dd8448eb211c80319c"
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "traceparent", "00-"+clientTrace+"-b7ad6b7169203331-01")
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, "/guardyn.test.Echo/Echo", wrapperspb.String("hi"), out); err != nil {
		t.Fatal(err)
	}
	if err := obs.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	spans := col.Spans()
	if len(spans) != 1 {
		t.Fatalf("collector got %d spans, want 1: %+v", len(spans), spans)
	}
	sp := spans[0]
	if sp.Service != "test" || sp.Attributes["rpc.method"] == "" {
		t.Errorf("span %+v lacks its service or method", sp)
	}
	if sp.TraceID == clientTrace {
		t.Errorf("the client chose the trace id %s", clientTrace)
	}
	dump, _ := json.Marshal(sp)
	for _, bad := range []string{"127.0.0.1", "server.address", "network.peer", "client.address", "host.name"} {
		if strings.Contains(string(dump), bad) {
			t.Errorf("exported span holds %q: %s", bad, dump)
		}
	}
	// The handler's log line names the call's trace.
	logged := ""
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "echo" {
			logged, _ = m["trace_id"].(string)
		}
	}
	if logged != sp.TraceID {
		t.Errorf("log line trace_id %q, span trace %q; logs:\n%s", logged, sp.TraceID, logs)
	}
}

// TestNoTracingNoHandler: without an endpoint nothing is traced and servers get no stats
// handler to pay for.
func TestNoTracingNoHandler(t *testing.T) {
	obs, err := observe.New(testCtx(t), observe.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if obs.ServerHandler() != nil || obs.Tracing() {
		t.Error("an Observer without endpoint traces")
	}
	if _, err := observe.New(testCtx(t), observe.Config{TraceRatio: 2}); err == nil {
		t.Error("trace ratio 2 accepted")
	}
}

// TestMessagesWrapperTimesAndCounts: every call through the wrapper is timed per
// operation, counts feed the inbox depth, and inside a traced call each is a child span.
func TestMessagesWrapperTimesAndCounts(t *testing.T) {
	obs, col, _ := tracing(t)
	files, err := msgembedded.Open(t.TempDir(), msgembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	store := obs.Messages(files)
	ctx, call := obs.TracerProvider().Tracer("test").Start(testCtx(t), "call")
	inbox := msgstore.Inbox{UserID: "u", DeviceID: "1"}
	now := time.Now()
	if err := store.Append(ctx, []msgstore.Message{{Inbox: inbox, ID: msgstore.ID{1}, Body: []byte("x"), Timestamp: now, Expiry: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if n, err := store.Count(ctx, inbox); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	call.End()
	if err := obs.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ops := map[string]uint64{}
	mfs, err := obs.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "guardyn_store_op_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["store"] == "msgstore" {
				ops[labels["op"]] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	if ops["append"] != 1 || ops["count"] != 1 {
		t.Errorf("msgstore calls timed: %v; want append 1, count 1", ops)
	}
	const want = `
# HELP guardyn_inbox_depth Undelivered messages in a device's inbox, sampled whenever it is counted (before every send to it).
# TYPE guardyn_inbox_depth histogram
guardyn_inbox_depth_bucket{le="0"} 0
guardyn_inbox_depth_bucket{le="1"} 1
guardyn_inbox_depth_bucket{le="10"} 1
guardyn_inbox_depth_bucket{le="100"} 1
guardyn_inbox_depth_bucket{le="1000"} 1
guardyn_inbox_depth_bucket{le="5000"} 1
guardyn_inbox_depth_bucket{le="10000"} 1
guardyn_inbox_depth_bucket{le="+Inf"} 1
guardyn_inbox_depth_sum 1
guardyn_inbox_depth_count 1
`
	if err := testutil.GatherAndCompare(obs.Registry(), strings.NewReader(want), "guardyn_inbox_depth"); err != nil {
		t.Error(err)
	}
	children := map[string]bool{}
	for _, sp := range col.Spans() {
		if sp.ParentSpanID == call.SpanContext().SpanID().String() {
			children[sp.Name] = true
		}
	}
	if !children["msgstore.append"] || children["msgstore.count"] {
		t.Errorf("child spans %v; want msgstore.append (count is timed only)", children)
	}
}

// TestPushesCounted: the notification service's hooks count pushes by provider and, for
// failures, by reason.
func TestPushesCounted(t *testing.T) {
	obs, err := observe.New(testCtx(t), observe.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := obs.Pushes()
	p.Sent("webpush", time.Millisecond)
	p.Sent("webpush", time.Millisecond)
	p.Failed("apns", "GONE", time.Millisecond)
	const want = `
# HELP guardyn_push_failed_total Push attempts that failed, by provider and reason.
# TYPE guardyn_push_failed_total counter
guardyn_push_failed_total{provider="apns",reason="GONE"} 1
# HELP guardyn_push_sent_total Pushes the provider accepted, by provider.
# TYPE guardyn_push_sent_total counter
guardyn_push_sent_total{provider="webpush"} 2
`
	if err := testutil.GatherAndCompare(obs.Registry(), strings.NewReader(want), "guardyn_push_sent_total", "guardyn_push_failed_total"); err != nil {
		t.Error(err)
	}
}
