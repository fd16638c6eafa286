package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type passAuth struct{}

func (a passAuth) Authenticate(ctx context.Context, _ string) (context.Context, error) {
	return ctx, nil
}

func newBenchChain(b *testing.B) *chain {
	b.Helper()
	m, err := newRPCMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(&echoDesc, &echoService{})
	m.index(s)
	return &chain{
		log:            slog.New(slog.NewJSONHandler(io.Discard, nil)),
		metrics:        m,
		auth:           passAuth{},
		validate:       func(any) error { return nil },
		defaultTimeout: 30 * time.Second,
	}
}

// BenchmarkUnaryChain measures the cost the pipeline adds to every unary
// call (the handler does nothing; the client's context has a deadline, as
// Guardyn clients always send one).
func BenchmarkUnaryChain(b *testing.B) {
	c := newBenchChain(b)
	info := &grpc.UnaryServerInfo{FullMethod: echoMethod}
	handler := func(ctx context.Context, req any) (any, error) { return req, nil }
	req := wrapperspb.String("x")
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.unary(ctx, req, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerUnaryLoopback is a whole unary call through a real server
// on loopback, with the interceptor pipeline, auth and validation hooks, from
// 64 concurrent callers over one connection: the ceiling the plumbing leaves
// for a service's send path on this machine.
func BenchmarkServerUnaryLoopback(b *testing.B) {
	h := startBench(b)
	req := wrapperspb.String("0123456789abcdef0123456789abcdef")
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		out := new(wrapperspb.StringValue)
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := h.conn.Invoke(ctx, echoMethod, req, out)
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

func startBench(b *testing.B) *harness {
	b.Helper()
	svc := &echoService{release: make(chan struct{}), started: make(chan struct{}, 1)}
	srv, err := New(Config{
		Register: func(r grpc.ServiceRegistrar) { r.RegisterService(&echoDesc, svc) },
		Logger:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Auth:     passAuth{},
		Validate: func(any) error { return nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		conn.Close()
		cancel()
		<-done
	})
	return &harness{srv: srv, svc: svc, conn: conn, cancel: cancel, done: done}
}

// BenchmarkServerStreamLoopback sends the same messages as
// BenchmarkServerUnaryLoopback over 64 long-lived streams (one request, one
// reply each), where auth runs once per stream and validation per message.
func BenchmarkServerStreamLoopback(b *testing.B) {
	h := startBench(b)
	req := wrapperspb.String("0123456789abcdef0123456789abcdef")
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := h.conn.NewStream(ctx, &echoDesc.Streams[0], chatMethod)
		if err != nil {
			b.Error(err)
			return
		}
		out := new(wrapperspb.StringValue)
		for pb.Next() {
			if err := stream.SendMsg(req); err != nil {
				b.Error(err)
				return
			}
			if err := stream.RecvMsg(out); err != nil {
				b.Error(err)
				return
			}
		}
		stream.CloseSend()
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
