package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/observe"
)

// Authenticator checks the caller of an RPC before its handler runs. It is
// called once per unary call and once per stream (not per stream message).
type Authenticator interface {
	// Authenticate returns the context the handler should run with, usually
	// carrying the caller's identity, or a gRPC status error that ends the call.
	// Implementations decide themselves which methods are public.
	Authenticate(ctx context.Context, fullMethod string) (context.Context, error)
}

// Validator checks one request message (for streams: every message received
// from the client). An error that is not already a gRPC status becomes
// InvalidArgument with reason INVALID_ARGUMENT and the error text as message.
type Validator func(msg any) error

// chain is the one interceptor pipeline of every Guardyn server:
// panic recovery → metrics → logging → auth → request validation.
// It is written as a single interceptor rather than grpc.ChainUnaryInterceptor
// because chaining allocates closures on every call.
type chain struct {
	log            *slog.Logger
	metrics        *rpcMetrics
	auth           Authenticator
	validate       Validator
	defaultTimeout time.Duration
	// stopping is cancelled when the server begins to shut down; it ends every
	// open stream (see stream).
	stopping context.Context
	// Calls in progress, for the drain to tell when all that is left waits on
	// clients: unary calls, streams, and streams blocked reading from the client.
	unaries, streams, receiving atomic.Int64
}

// onlyWaitingStreams reports whether the calls left are all streams blocked reading from
// their clients. With no calls at all it is false: GracefulStop then ends by itself, after
// the last responses are written (the counters drop when a handler returns, a moment before
// its response goes out).
func (c *chain) onlyWaitingStreams() bool {
	streams := c.streams.Load()
	return streams > 0 && c.unaries.Load() == 0 && streams == c.receiving.Load()
}

func (c *chain) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	c.unaries.Add(1)
	defer func() {
		c.unaries.Add(-1)
		if p := recover(); p != nil {
			err = c.recovered(ctx, info.FullMethod, p)
		}
		c.finish(ctx, info.FullMethod, start, err)
	}()

	if c.defaultTimeout > 0 {
		if _, has := ctx.Deadline(); !has {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.defaultTimeout)
			defer cancel()
		}
	}
	if c.auth != nil && !isInfraMethod(info.FullMethod) {
		if ctx, err = c.auth.Authenticate(ctx, info.FullMethod); err != nil {
			return nil, err
		}
	}
	if c.validate != nil {
		if err = c.validateMsg(req); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

func (c *chain) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	ctx := ss.Context()
	c.streams.Add(1)
	open := c.metrics.streamOpened(info.FullMethod)
	defer func() {
		c.streams.Add(-1)
		if open != nil {
			open.Dec()
		}
		if p := recover(); p != nil {
			err = c.recovered(ctx, info.FullMethod, p)
		}
		c.finish(ctx, info.FullMethod, start, err)
	}()

	if c.auth != nil && !isInfraMethod(info.FullMethod) {
		authCtx, err := c.authenticateAside(ctx, info.FullMethod)
		if err != nil {
			return err
		}
		ctx = authCtx
	}
	// Streams such as Receive wait for hours: a drain that waited for them would
	// always take the whole drain timeout. When the server stops, the handler's
	// context ends (an AfterFunc, not a goroutine per stream) and the client gets
	// UNAVAILABLE with SHUTTING_DOWN, on which it reconnects. Work a stream was
	// doing is lost only as when a client disconnects: nothing acknowledged is.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cut atomic.Bool
	release := context.AfterFunc(c.stopping, func() {
		cut.Store(true)
		cancel()
	})
	defer release()
	err = handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx, chain: c})
	if cut.Load() && ss.Context().Err() == nil {
		return Error(codes.Unavailable, ReasonShuttingDown, "the server is shutting down; reconnect")
	}
	return err
}

// authenticateAside runs Authenticate for a stream on a goroutine of its own.
// A token check (ed25519) needs several KiB of stack; on the stream's
// goroutine it would double that stack to 16 KiB until the next GC, and
// streams such as Receive then idle for hours. The short-lived goroutine's
// stack goes back to the runtime's pool for the next check instead
// (docs/perf-idle.md). A panic in Authenticate fails the stream like one in
// the handler.
func (c *chain) authenticateAside(ctx context.Context, method string) (context.Context, error) {
	type result struct {
		ctx context.Context
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: c.recovered(ctx, method, p)}
			}
		}()
		authCtx, err := c.auth.Authenticate(ctx, method)
		done <- result{authCtx, err}
	}()
	r := <-done
	return r.ctx, r.err
}

// isInfraMethod reports whether method belongs to gRPC health checking or
// reflection, which load balancers and developer tools call without tokens.
func isInfraMethod(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.")
}

func (c *chain) validateMsg(msg any) error {
	err := c.validate(msg)
	if err == nil || isStatus(err) {
		return err
	}
	return Error(codes.InvalidArgument, ReasonInvalidArgument, "%v", err)
}

func (c *chain) recovered(ctx context.Context, method string, p any) error {
	c.log.LogAttrs(ctx, slog.LevelError, "rpc panic",
		slog.String("method", method),
		slog.Any("panic", p),
		slog.String("stack", string(debug.Stack())))
	return Error(codes.Internal, ReasonInternal, "internal error")
}

// finish records the end of a call in the metrics, the call's span and the log.
func (c *chain) finish(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	elapsed := time.Since(start)
	reason := ""
	if err != nil {
		reason = Reason(err)
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(attribute.String(observe.AttrPrefix+"reason", reason))
		}
	}
	c.metrics.observe(method, code, reason, elapsed)
	c.logCall(ctx, method, code, reason, elapsed, err)
}

// logCall logs successful calls at debug level only: at thousands of calls a
// second an info line per call would cost more than the call itself.
func (c *chain) logCall(ctx context.Context, method string, code codes.Code, reason string, elapsed time.Duration, err error) {
	level := slog.LevelDebug
	switch code {
	case codes.OK, codes.Canceled:
	case codes.Unknown, codes.Internal, codes.DataLoss, codes.Unimplemented:
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	if !c.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("elapsed", elapsed),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
		if reason != "" {
			attrs = append(attrs, slog.String("reason", reason))
		}
	}
	c.log.LogAttrs(ctx, level, "rpc", attrs...)
}

// wrappedStream carries the authenticated context into stream handlers and
// validates every message the client sends.
type wrappedStream struct {
	grpc.ServerStream
	ctx   context.Context
	chain *chain
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

func (w *wrappedStream) RecvMsg(m any) error {
	if w.chain.stopping.Err() != nil {
		return Error(codes.Unavailable, ReasonShuttingDown, "the server is shutting down; reconnect")
	}
	w.chain.receiving.Add(1)
	err := w.ServerStream.RecvMsg(m)
	w.chain.receiving.Add(-1)
	if err != nil {
		return err
	}
	if w.chain.validate == nil {
		return nil
	}
	return w.chain.validateMsg(m)
}
