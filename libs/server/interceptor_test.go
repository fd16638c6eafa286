package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
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
