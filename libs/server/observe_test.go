package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/observe/observetest"
)

// refuseBad is a Validator failing the value "bad" with a stable reason.
func refuseBad(msg any) error {
	if v, ok := msg.(*wrapperspb.StringValue); ok && v.GetValue() == "bad" {
		return Error(codes.InvalidArgument, "BAD_VALUE", "bad value")
	}
	return nil
}

// TestErrorsCountedByReason: a failed call is counted by method, code and its stable
// reason, so an operator sees which refusal grows.
func TestErrorsCountedByReason(t *testing.T) {
	h := start(t, Config{Validate: refuseBad})
	if _, err := h.echo(ctxTimeout(t), "bad"); Reason(err) != "BAD_VALUE" {
		t.Fatalf("echo(bad) = %v", err)
	}
	_, body := h.get(t, "/metrics")
	want := `guardyn_grpc_server_errors_total{code="InvalidArgument",method="/guardyn.test.Echo/Echo",reason="BAD_VALUE"} 1`
	if !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

// TestOpenStreamsGauge: open streams are gauged by method while they last (Receive
// streams are the connected devices).
func TestOpenStreamsGauge(t *testing.T) {
	h := start(t, Config{})
	ctx := ctxTimeout(t)
	stream, err := h.conn.NewStream(ctx, &echoDesc.Streams[0], chatMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(wrapperspb.String("x")); err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	gauge := func(n int) string {
		return `guardyn_grpc_server_open_streams{method="/guardyn.test.Echo/Chat"} ` + string(rune('0'+n))
	}
	if _, body := h.get(t, "/metrics"); !strings.Contains(body, gauge(1)+"\n") {
		t.Errorf("/metrics lacks %q while the stream is open", gauge(1))
	}
	stream.CloseSend()
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); err == nil {
		t.Fatal("stream did not end")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := h.get(t, "/metrics")
		if strings.Contains(body, gauge(0)+"\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q after the stream ended", gauge(0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestObserverTracesCalls: with an Observer that exports traces, every call is a span
// carrying the error's reason, and its log line carries the span's trace id.
func TestObserverTracesCalls(t *testing.T) {
	col, err := observetest.Start(true)
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	var logs bytes.Buffer
	obs, err := observe.New(ctxTimeout(t), observe.Config{
		Service: "echo", LogLevel: slog.LevelDebug, LogWriter: &logs,
		OTLPEndpoint: col.Addr(), OTLPInsecure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, Config{Observer: obs, Logger: obs.Logger(), Validate: refuseBad})
	if _, err := h.echo(ctxTimeout(t), "bad"); Reason(err) != "BAD_VALUE" {
		t.Fatalf("echo(bad) = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := obs.Close(ctx); err != nil {
		t.Fatal(err)
	}
	spans := col.Spans()
	if len(spans) != 1 || spans[0].Attributes["guardyn.reason"] != "BAD_VALUE" {
		t.Fatalf("spans %+v; want one with guardyn.reason BAD_VALUE", spans)
	}
	if !strings.Contains(logs.String(), `"trace_id":"`+spans[0].TraceID+`"`) {
		t.Errorf("no log line names trace %s:\n%s", spans[0].TraceID, logs.String())
	}
}
