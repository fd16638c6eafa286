package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// echoService is a hand-written gRPC service over well-known types so the
// tests need no generated code. Behaviour is chosen by the request text.
type echoService struct {
	release chan struct{} // "block" requests wait on it
	started chan struct{} // signalled when a "block" request is running
}

type ctxKey struct{}

func (e *echoService) echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	switch v := in.GetValue(); {
	case v == "panic":
		panic("handler exploded")
	case v == "block":
		e.started <- struct{}{}
		select {
		case <-e.release:
			return wrapperspb.String("released"), nil
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	case v == "deadline":
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("no deadline")
		}
		return wrapperspb.String("has deadline"), nil
	case v == "whoami":
		who, _ := ctx.Value(ctxKey{}).(string)
		return wrapperspb.String(who), nil
	default:
		return wrapperspb.String(v), nil
	}
}

func (e *echoService) chat(stream grpc.ServerStream) error {
	for {
		in := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(in); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		who, _ := stream.Context().Value(ctxKey{}).(string)
		if err := stream.SendMsg(wrapperspb.String(who + ":" + in.GetValue())); err != nil {
			return err
		}
	}
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "guardyn.test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			call := func(ctx context.Context, req any) (any, error) {
				return srv.(*echoService).echo(ctx, req.(*wrapperspb.StringValue))
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/guardyn.test.Echo/Echo"}, call)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(*echoService).chat(stream)
		},
	}, {
		// Wait sends one message, then waits on its context, as Receive waits for
		// deliveries.
		StreamName:    "Wait",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			if err := stream.SendMsg(wrapperspb.String("waiting")); err != nil {
				return err
			}
			<-stream.Context().Done()
			return nil
		},
	}},
}

const (
	echoMethod = "/guardyn.test.Echo/Echo"
	chatMethod = "/guardyn.test.Echo/Chat"
	waitMethod = "/guardyn.test.Echo/Wait"
)

type harness struct {
	srv    *Server
	svc    *echoService
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{svc: &echoService{release: make(chan struct{}), started: make(chan struct{}, 1)}, done: make(chan error, 1)}
	cfg.Register = func(r grpc.ServiceRegistrar) { r.RegisterService(&echoDesc, h.svc) }
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- srv.Run(ctx) }()
	h.conn, err = grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		h.conn.Close()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	return h
}

func (h *harness) echo(ctx context.Context, v string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := h.conn.Invoke(ctx, echoMethod, wrapperspb.String(v), out)
	return out.GetValue(), err
}

func (h *harness) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + h.srv.AdminAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServeAndAdminEndpoints(t *testing.T) {
	h := start(t, Config{})
	ctx := ctxTimeout(t)

	got, err := h.echo(ctx, "hello")
	if err != nil || got != "hello" {
		t.Fatalf("Echo = %q, %v; want hello", got, err)
	}
	resp, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", resp.GetStatus(), err)
	}
	if code, _ := h.get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := h.get(t, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d", code)
	}
	code, body := h.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	want := `guardyn_grpc_server_handled_total{code="OK",method="/guardyn.test.Echo/Echo"} 1`
	if !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %q", want)
	}
	if !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics lacks Go runtime metrics")
	}
	// The release stamp (libs/buildinfo; a test binary has the defaults).
	if want := `guardyn_build_info{commit="unknown",version="devel"} 1`; !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

func TestReadyzReportsDependencyFailure(t *testing.T) {
	h := start(t, Config{Ready: func(context.Context) error { return errors.New("store down") }})
	code, body := h.get(t, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store down") {
		t.Errorf("/readyz = %d %q; want 503 naming the dependency", code, body)
	}
}

func TestGracefulShutdownDrainsCalls(t *testing.T) {
	h := start(t, Config{DrainTimeout: 5 * time.Second})
	ctx := ctxTimeout(t)
	health := healthpb.NewHealthClient(h.conn)
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}

	result := make(chan error, 1)
	go func() {
		got, err := h.echo(ctx, "block")
		if err == nil && got != "released" {
			err = errors.New("unexpected reply " + got)
		}
		result <- err
	}()
	<-h.svc.started
	h.cancel()

	// While the call drains, readiness must fail so no new work arrives.
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, _ := h.get(t, "/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d during shutdown", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := h.srv.Health().Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health during drain = %v, %v; want NOT_SERVING", st.GetStatus(), err)
	}
	select {
	case err := <-h.done:
		t.Fatalf("Run returned %v before the call drained", err)
	default:
	}
	close(h.svc.release)
	if err := <-result; err != nil {
		t.Errorf("in-flight call during graceful stop: %v", err)
	}
	if err := <-h.done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	h.done <- nil // for cleanup
}

// TestShutdownEndsWaitingStreamsAtOnce: streams that only wait (one on its context, one
// for its client's next message) do not hold a stop for the drain timeout, and their
// clients get UNAVAILABLE with SHUTTING_DOWN, on which they reconnect.
func TestShutdownEndsWaitingStreamsAtOnce(t *testing.T) {
	h := start(t, Config{DrainTimeout: 20 * time.Second})
	ctx := ctxTimeout(t)
	open := func(method string, first *wrapperspb.StringValue) grpc.ClientStream {
		t.Helper()
		cs, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
		if err != nil {
			t.Fatal(err)
		}
		if first != nil {
			if err := cs.SendMsg(first); err != nil {
				t.Fatal(err)
			}
		}
		if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatalf("%s: first message: %v", method, err)
		}
		return cs
	}
	waiting := open(waitMethod, nil)
	reading := open(chatMethod, wrapperspb.String("hi"))

	began := time.Now()
	h.cancel()
	if err := <-h.done; err != nil {
		t.Errorf("Run = %v", err)
	}
	h.done <- nil
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("stop took %v with only waiting streams open (drain timeout 20s)", took)
	}
	err := waiting.RecvMsg(new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unavailable || Reason(err) != ReasonShuttingDown {
		t.Errorf("waiting stream ended with %v (reason %q), want Unavailable/%s", err, Reason(err), ReasonShuttingDown)
	}
	if err := reading.RecvMsg(new(wrapperspb.StringValue)); status.Code(err) != codes.Unavailable {
		t.Errorf("reading stream ended with %v, want Unavailable", err)
	}
}

func TestDrainTimeoutCutsCalls(t *testing.T) {
	h := start(t, Config{DrainTimeout: 100 * time.Millisecond})
	ctx := ctxTimeout(t)
	result := make(chan error, 1)
	go func() {
		_, err := h.echo(ctx, "block")
		result <- err
	}()
	<-h.svc.started
	began := time.Now()
	h.cancel()
	if err := <-h.done; err != nil {
		t.Errorf("Run = %v", err)
	}
	h.done <- nil
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("shutdown took %v with a 100ms drain timeout", took)
	}
	if err := <-result; status.Code(err) == codes.OK {
		t.Errorf("blocked call survived a forced stop")
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	h := start(t, Config{})
	ctx := ctxTimeout(t)
	_, err := h.echo(ctx, "panic")
	if status.Code(err) != codes.Internal || Reason(err) != ReasonInternal {
		t.Fatalf("panic gave %v (reason %q); want Internal/INTERNAL", err, Reason(err))
	}
	if strings.Contains(err.Error(), "exploded") {
		t.Errorf("panic value leaked to the client: %v", err)
	}
	// The server survives.
	if got, err := h.echo(ctx, "still here"); err != nil || got != "still here" {
		t.Errorf("after panic: %q, %v", got, err)
	}
}

// fakeAuth admits the echo service and records the caller in the context.
type fakeAuth struct{ calls atomic.Int32 }

func (a *fakeAuth) Authenticate(ctx context.Context, method string) (context.Context, error) {
	a.calls.Add(1)
	if method == echoMethod || method == chatMethod {
		return context.WithValue(ctx, ctxKey{}, "alice"), nil
	}
	return nil, Error(codes.Unauthenticated, "TOKEN_MISSING", "no token")
}

type denyAll struct{}

func (denyAll) Authenticate(ctx context.Context, method string) (context.Context, error) {
	return nil, Error(codes.Unauthenticated, "TOKEN_MISSING", "no token for %s", method)
}

func TestAuthRunsAndHealthIsPublic(t *testing.T) {
	h := start(t, Config{Auth: denyAll{}})
	ctx := ctxTimeout(t)
	_, err := h.echo(ctx, "hi")
	if status.Code(err) != codes.Unauthenticated || Reason(err) != "TOKEN_MISSING" {
		t.Fatalf("denied call = %v; want Unauthenticated/TOKEN_MISSING", err)
	}
	if _, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check must not need auth: %v", err)
	}
}

func TestAuthContextReachesHandlers(t *testing.T) {
	auth := &fakeAuth{}
	h := start(t, Config{Auth: auth})
	ctx := ctxTimeout(t)
	if got, err := h.echo(ctx, "whoami"); err != nil || got != "alice" {
		t.Fatalf("whoami = %q, %v", got, err)
	}
	stream, err := h.conn.NewStream(ctx, &echoDesc.Streams[0], chatMethod)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"a", "b"} {
		if err := stream.SendMsg(wrapperspb.String(msg)); err != nil {
			t.Fatal(err)
		}
		out := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(out); err != nil {
			t.Fatal(err)
		}
		if out.GetValue() != "alice:"+msg {
			t.Errorf("stream reply %q", out.GetValue())
		}
	}
	stream.CloseSend()
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); !errors.Is(err, io.EOF) {
		t.Errorf("stream end = %v", err)
	}
	if auth.calls.Load() != 2 {
		t.Errorf("Authenticate ran %d times for one unary call and one stream of two messages; want 2", auth.calls.Load())
	}
}

// panicOnStreams admits unary calls and panics while authenticating a stream.
type panicOnStreams struct{}

func (panicOnStreams) Authenticate(ctx context.Context, method string) (context.Context, error) {
	if method == chatMethod {
		panic("authenticator exploded")
	}
	return ctx, nil
}

// Streams are authenticated on a goroutine of their own: its failures and
// panics must still end the stream with a status, never the process.
func TestStreamAuthFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		auth   Authenticator
		code   codes.Code
		reason string
	}{
		{"denied", denyAll{}, codes.Unauthenticated, "TOKEN_MISSING"},
		{"panic", panicOnStreams{}, codes.Internal, ReasonInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, Config{Auth: tc.auth})
			ctx := ctxTimeout(t)
			stream, err := h.conn.NewStream(ctx, &echoDesc.Streams[0], chatMethod)
			if err != nil {
				t.Fatal(err)
			}
			err = stream.RecvMsg(new(wrapperspb.StringValue))
			if status.Code(err) != tc.code || Reason(err) != tc.reason {
				t.Fatalf("stream = %v (reason %q); want %v/%s", err, Reason(err), tc.code, tc.reason)
			}
			if strings.Contains(err.Error(), "exploded") {
				t.Errorf("panic value leaked to the client: %v", err)
			}
			if _, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("server after a failed stream authentication: %v", err)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	validate := func(m any) error {
		v, ok := m.(*wrapperspb.StringValue)
		if !ok {
			return errors.New("unexpected type")
		}
		switch v.GetValue() {
		case "too-long":
			return errors.New("value: got 8 bytes, want at most 4")
		case "conflict":
			return Error(codes.FailedPrecondition, "EPOCH_CONFLICT", "conflict")
		}
		return nil
	}
	h := start(t, Config{Validate: validate})
	ctx := ctxTimeout(t)

	_, err := h.echo(ctx, "too-long")
	if status.Code(err) != codes.InvalidArgument || Reason(err) != ReasonInvalidArgument {
		t.Errorf("invalid request = %v; want InvalidArgument/INVALID_ARGUMENT", err)
	}
	if !strings.Contains(status.Convert(err).Message(), "want at most 4") {
		t.Errorf("validator message lost: %v", err)
	}
	_, err = h.echo(ctx, "conflict")
	if status.Code(err) != codes.FailedPrecondition || Reason(err) != "EPOCH_CONFLICT" {
		t.Errorf("status from validator rewritten: %v", err)
	}

	stream, err := h.conn.NewStream(ctx, &echoDesc.Streams[0], chatMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(wrapperspb.String("ok")); err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
		t.Fatalf("valid stream message: %v", err)
	}
	if err := stream.SendMsg(wrapperspb.String("too-long")); err != nil {
		t.Fatal(err)
	}
	err = stream.RecvMsg(new(wrapperspb.StringValue))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("invalid stream message = %v; want InvalidArgument", err)
	}
}

func TestUnaryTimeoutApplied(t *testing.T) {
	h := start(t, Config{})
	// No deadline from the client: the server must impose one.
	got, err := h.echo(context.Background(), "deadline")
	if err != nil || got != "has deadline" {
		t.Errorf("deadline = %q, %v", got, err)
	}
}

func TestLargeMessages(t *testing.T) {
	h := start(t, Config{})
	ctx := ctxTimeout(t)
	big := strings.Repeat("x", 3<<20)
	out := new(wrapperspb.StringValue)
	err := h.conn.Invoke(ctx, echoMethod, wrapperspb.String(big), out, grpc.MaxCallRecvMsgSize(8<<20))
	if err != nil || len(out.GetValue()) != len(big) {
		t.Fatalf("3 MiB echo: %v", err)
	}
	huge := strings.Repeat("x", DefaultMaxMessageBytes+1)
	err = h.conn.Invoke(ctx, echoMethod, wrapperspb.String(huge), out)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("over-limit message = %v; want ResourceExhausted", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without Register succeeded")
	}
	s, err := New(Config{Register: func(grpc.ServiceRegistrar) {}, GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = New(Config{Register: func(grpc.ServiceRegistrar) {}, GRPCAddr: s.GRPCAddr().String()})
	if err == nil {
		t.Error("second listener on a taken port succeeded")
	}
}

func TestErrorAndReason(t *testing.T) {
	err := Error(codes.NotFound, "DEVICE_NOT_FOUND", "device %q not found", "d1")
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != `device "d1" not found` {
		t.Errorf("Error = %v", err)
	}
	if Reason(err) != "DEVICE_NOT_FOUND" {
		t.Errorf("Reason = %q", Reason(err))
	}
	if Reason(errors.New("plain")) != "" || Reason(status.Error(codes.Internal, "x")) != "" {
		t.Error("Reason invented a reason")
	}
}

func TestReflectionOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		s, err := New(Config{Register: func(grpc.ServiceRegistrar) {}, Reflection: on, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		_, has := s.grpc.GetServiceInfo()["grpc.reflection.v1.ServerReflection"]
		s.Close()
		if has != on {
			t.Errorf("Reflection=%v: reflection service registered = %v", on, has)
		}
	}
}
