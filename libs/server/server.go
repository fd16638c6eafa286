// Package server runs a Guardyn gRPC service the one way every binary does:
// gRPC with health checking, an admin HTTP port (/healthz, /readyz, /metrics),
// one interceptor pipeline and a bounded graceful shutdown.
//
// See docs/operations.md and the gRPC health checking protocol,
// https://github.com/grpc/grpc/blob/master/doc/health-checking.md.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/guardyn/guardyn/libs/buildinfo"
	"github.com/guardyn/guardyn/libs/observe"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultMaxMessageBytes = 4 << 20
	DefaultDrainTimeout    = 10 * time.Second
	DefaultUnaryTimeout    = 30 * time.Second
	DefaultMaxStreams      = 1024
)

// Flow-control windows, fixed (see New). A stream's window holds the largest payload the
// APIs accept (an MLS Welcome of 1 MiB) at once; a connection's bounds what its streams
// may have buffered unread.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// Config describes one server. Only Register is required; zero values get
// the defaults above, ":0" addresses bind ephemeral ports.
type Config struct {
	// GRPCAddr and AdminAddr are listen addresses, e.g. ":8443" or
	// "127.0.0.1:0". Empty means "127.0.0.1:0".
	GRPCAddr  string
	AdminAddr string

	// Register adds the service implementations to the gRPC server.
	Register func(grpc.ServiceRegistrar)

	// Auth authenticates every call before validation; nil disables it
	// (tests and purely public services only).
	Auth Authenticator
	// Validate checks every request message; nil disables it.
	Validate Validator
	// Ready reports whether dependencies (stores, bus) are usable; /readyz
	// calls it with a short deadline. Nil means ready once serving.
	Ready func(context.Context) error

	// Reflection registers gRPC server reflection; development only.
	Reflection bool
	// TLS, when set, serves gRPC over TLS; nil serves plaintext h2c, for a
	// TLS-terminating proxy in front or for loopback use.
	TLS *tls.Config

	// Observer, when set, supplies the Logger and Metrics left nil, and traces every call
	// when it exports traces (libs/observe).
	Observer *observe.Observer
	Logger   *slog.Logger         // nil: Observer's, else JSON to stderr at info level
	Metrics  *prometheus.Registry // nil: Observer's, else a fresh registry with Go and process collectors

	MaxMessageBytes int           // per message, both directions
	MaxStreams      uint32        // concurrent streams per connection
	DrainTimeout    time.Duration // how long GracefulStop may wait for calls to end
	// UnaryTimeout bounds unary calls whose client sent no deadline;
	// negative disables it.
	UnaryTimeout time.Duration

	// GRPCOptions are appended last, e.g. for a stats handler.
	GRPCOptions []grpc.ServerOption

	// Web, when set, serves a third listener at WebAddr for browsers, which cannot speak
	// gRPC: HTTP/1.1, and HTTP/2 when TLS is set. Web builds its handler from the gRPC
	// server, typically a gRPC-Web translator in front of grpc.Server.ServeHTTP: calls that
	// reach the gRPC server that way pass the same interceptor pipeline (authentication,
	// validation, metrics) and message limits as native calls, and the drain ends them too.
	Web func(*grpc.Server) (http.Handler, error)
	// WebAddr is the web listen address; empty means "127.0.0.1:0".
	WebAddr string
}

// Bounds of the web listener's HTTP server. There is no read or write timeout: a
// server-streaming call (a browser's receive stream) lasts for hours, and net/http's
// read timeout would cancel it once its request body has been read. Message sizes and
// the unary timeout bound each call instead.
const (
	webReadHeaderTimeout = 10 * time.Second
	webIdleTimeout       = 2 * time.Minute
	webMaxHeaderBytes    = 64 << 10
)

// Server is a listening, not yet serving, gRPC + admin HTTP server.
type Server struct {
	log      *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	admin    *http.Server
	web      *http.Server // nil without Config.Web
	grpcLis  net.Listener
	adminLis net.Listener
	webLis   net.Listener
	webTLS   bool
	ready    func(context.Context) error
	drain    time.Duration
	stop     context.CancelFunc // ends open streams at shutdown
	chain    *chain
	serving  atomic.Bool
	started  atomic.Bool
}

// New validates cfg, binds both listeners and registers the services. Call
// [Server.Run] to serve, or [Server.Close] to release the listeners.
func New(cfg Config) (*Server, error) {
	if cfg.Register == nil {
		return nil, errors.New("server config: Register is required")
	}
	cfg = withDefaults(cfg)

	metrics, err := newRPCMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("register rpc metrics: %w", err)
	}
	stopping, stop := context.WithCancel(context.Background())
	ch := &chain{
		stopping:       stopping,
		log:            cfg.Logger,
		metrics:        metrics,
		auth:           cfg.Auth,
		validate:       cfg.Validate,
		defaultTimeout: cfg.UnaryTimeout,
	}
	opts := []grpc.ServerOption{
		grpc.UnaryInterceptor(ch.unary),
		grpc.StreamInterceptor(ch.stream),
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.MaxSendMsgSize(cfg.MaxMessageBytes),
		grpc.MaxConcurrentStreams(cfg.MaxStreams),
		grpc.ConnectionTimeout(20 * time.Second),
		// Fixed flow-control windows turn off grpc-go's bandwidth-delay probing, which
		// pings the peer on received data: with many devices each sending small messages
		// that is a write per message more (docs/perf-throughput.md).
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		// Mobile clients hold Receive streams open for hours behind NATs
		// that drop idle flows: ping them, and let them ping us.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: 15 * time.Minute,
			Time:              time.Minute,
			Timeout:           20 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             15 * time.Second,
			PermitWithoutStream: true,
		}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	opts = append(opts, cfg.GRPCOptions...)

	s := &Server{
		log:    cfg.Logger,
		grpc:   grpc.NewServer(opts...),
		health: health.NewServer(),
		ready:  cfg.Ready,
		drain:  cfg.DrainTimeout,
		stop:   stop,
		chain:  ch,
	}
	// Not serving until Run has both listeners accepting.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if cfg.Reflection {
		reflection.Register(s.grpc)
	}
	cfg.Register(s.grpc)
	metrics.index(s.grpc)

	if s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("listen grpc on %q: %w", cfg.GRPCAddr, err)
	}
	if s.adminLis, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		s.grpcLis.Close()
		return nil, fmt.Errorf("listen admin on %q: %w", cfg.AdminAddr, err)
	}
	s.admin = &http.Server{
		Handler:           s.adminHandler(cfg.Metrics),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}
	if cfg.Web != nil {
		if err := s.listenWeb(cfg); err != nil {
			s.grpcLis.Close()
			s.adminLis.Close()
			return nil, err
		}
	}
	return s, nil
}

// listenWeb builds the web handler and binds its listener.
func (s *Server) listenWeb(cfg Config) error {
	h, err := cfg.Web(s.grpc)
	if err != nil {
		return fmt.Errorf("web handler: %w", err)
	}
	addr := cfg.WebAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if s.webLis, err = net.Listen("tcp", addr); err != nil {
		return fmt.Errorf("listen web on %q: %w", addr, err)
	}
	s.web = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: webReadHeaderTimeout,
		IdleTimeout:       webIdleTimeout,
		MaxHeaderBytes:    webMaxHeaderBytes,
		// Over HTTP/2 a browser multiplexes its calls on one connection: bound them as
		// the gRPC listener does.
		HTTP2:    &http.HTTP2Config{MaxConcurrentStreams: int(cfg.MaxStreams)},
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	if cfg.TLS != nil {
		s.web.TLSConfig = cfg.TLS.Clone()
		s.webTLS = true
	}
	return nil
}

func withDefaults(cfg Config) Config {
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "127.0.0.1:0"
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = "127.0.0.1:0"
	}
	if o := cfg.Observer; o != nil {
		if cfg.Logger == nil {
			cfg.Logger = o.Logger()
		}
		if cfg.Metrics == nil {
			cfg.Metrics = o.Registry()
		}
		if h := o.ServerHandler(); h != nil {
			// The stats handler opens the call's span before the interceptors run, so
			// their log lines carry its trace id.
			cfg.GRPCOptions = append(cfg.GRPCOptions, grpc.StatsHandler(h))
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
		cfg.Metrics.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			// The release stamp (docs/release.md), so a deployment shows what it runs.
			buildinfo.Metric(),
		)
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.UnaryTimeout == 0 {
		cfg.UnaryTimeout = DefaultUnaryTimeout
	}
	return cfg
}

// GRPCAddr is the bound gRPC address (the real port when configured ":0").
func (s *Server) GRPCAddr() net.Addr { return s.grpcLis.Addr() }

// AdminAddr is the bound admin HTTP address.
func (s *Server) AdminAddr() net.Addr { return s.adminLis.Addr() }

// WebAddr is the bound web address, or nil when the server has no web listener.
func (s *Server) WebAddr() net.Addr {
	if s.webLis == nil {
		return nil
	}
	return s.webLis.Addr()
}

// Health is the gRPC health server, for services that report per-service
// status. The overall ("") status is managed by Run.
func (s *Server) Health() *health.Server { return s.health }

// Close releases the listeners of a server that will not Run.
func (s *Server) Close() error {
	s.stop()
	err := errors.Join(s.grpcLis.Close(), s.adminLis.Close())
	if s.webLis != nil {
		err = errors.Join(err, s.webLis.Close())
	}
	return err
}

// Run serves until ctx is done or a listener fails, then shuts down:
// health turns NOT_SERVING and /readyz fails first so balancers stop sending
// new calls, then GracefulStop lets running calls finish for at most the
// drain timeout before remaining calls and streams are cut. Run may be called
// once; it returns nil after a shutdown caused by ctx.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("server: Run called twice")
	}
	errc := make(chan error, 3)
	if s.web != nil {
		go func() {
			var err error
			if s.webTLS {
				err = s.web.ServeTLS(s.webLis, "", "")
			} else {
				err = s.web.Serve(s.webLis)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve web: %w", err)
			}
		}()
	}
	go func() {
		if err := s.grpc.Serve(s.grpcLis); err != nil {
			errc <- fmt.Errorf("serve grpc: %w", err)
		}
	}()
	go func() {
		if err := s.admin.Serve(s.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve admin: %w", err)
		}
	}()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.serving.Store(true)
	attrs := []any{slog.String("grpc", s.GRPCAddr().String()), slog.String("admin", s.AdminAddr().String())}
	if s.web != nil {
		attrs = append(attrs, slog.String("web", s.WebAddr().String()))
	}
	s.log.Info("serving", attrs...)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.shutdown()
	return serveErr
}

func (s *Server) shutdown() {
	s.serving.Store(false)
	s.health.Shutdown()
	s.log.Info("draining", slog.Duration("timeout", s.drain))
	deadline := time.Now().Add(s.drain)
	// Streams end now (chain.stream), native and web alike.
	s.stop()
	if s.web != nil {
		s.drainWeb(deadline)
	}

	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	// Unary calls finish within the drain timeout. A stream blocked reading from
	// its client cannot be woken from the server side: once nothing but such
	// streams has been left for a while (so that a call that just returned has had
	// its response written), there is nothing to wait for.
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	const settle = 100 * time.Millisecond
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	var waitingSince time.Time
	for done := false; !done; {
		select {
		case <-stopped:
			done = true
		case now := <-poll.C:
			switch {
			case !s.chain.onlyWaitingStreams():
				waitingSince = time.Time{}
			case waitingSince.IsZero():
				waitingSince = now
			case now.Sub(waitingSince) >= settle:
				s.grpc.Stop()
				<-stopped
				done = true
			}
		case <-timer.C:
			s.log.Warn("drain timeout: closing remaining calls")
			s.grpc.Stop()
			<-stopped
			done = true
		}
	}

	// The admin port outlives gRPC so probes and scrapes see the drain.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.admin.Shutdown(ctx); err != nil {
		s.admin.Close()
	}
	s.log.Info("stopped")
}

// drainWeb stops the web listener and waits, until deadline, for its calls in progress.
// It runs before GracefulStop, which would cut them: grpc-go drains a call that came
// through ServeHTTP by closing it at once, so a browser's unary call would fail where a
// native one finishes. Streams have already been ended.
func (s *Server) drainWeb(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := s.web.Shutdown(ctx); err != nil {
		s.log.Warn("drain timeout: closing remaining web calls")
		s.web.Close()
	}
}

// Run is New followed by Server.Run, for binaries that do not need the bound
// addresses before serving.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
