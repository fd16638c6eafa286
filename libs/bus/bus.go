// Package bus connects Guardyn services to NATS: an embedded server with
// JetStream for one machine, a cluster URL otherwise, and the same helpers
// over both for device wake-ups, durable event consumers and KV buckets.
//
// See https://docs.nats.io/nats-concepts/jetstream.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bus is one connection to NATS and, when embedded, the server behind it.
type Bus struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *server.Server
	log      *slog.Logger
	obs      Observer // nil: not observed
	// replicas of every stream and bucket this Bus creates; 0 means 1 (embedded).
	replicas int
}

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// Listen additionally opens a TCP client port on Host:Port (Port 0: an
	// ephemeral one, see ClientURL), for tools or other local processes.
	// Without it the server has no network listener at all and the Bus
	// talks to it over an in-process pipe.
	Listen bool
	Host   string // default 127.0.0.1
	Port   int

	// SyncAlways fsyncs every JetStream write; otherwise JetStream syncs
	// every 2 minutes and on shutdown. Wake-ups never need it: durable state
	// lives in the stores.
	SyncAlways bool
	// MaxStoreBytes bounds JetStream file storage; 0 lets the server choose.
	MaxStoreBytes int64

	Logger *slog.Logger // nil: discard
}

// StartEmbedded runs nats-server in this process with JetStream file
// storage under dir and returns a Bus connected to it. The server stops when
// the Bus is closed.
func StartEmbedded(ctx context.Context, dir string, opts EmbeddedOptions) (*Bus, error) {
	if dir == "" {
		return nil, errors.New("embedded nats: data dir is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	so := &server.Options{
		ServerName:        "guardyn-embedded",
		JetStream:         true,
		StoreDir:          dir,
		JetStreamMaxStore: opts.MaxStoreBytes,
		SyncAlways:        opts.SyncAlways,
		NoSigs:            true,
		DontListen:        !opts.Listen,
		Host:              opts.Host,
		Port:              opts.Port,
	}
	if so.Host == "" {
		so.Host = "127.0.0.1"
	}
	if opts.Listen && so.Port == 0 {
		so.Port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log: log, id: ns.ID()}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(readyWait(ctx)) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("embedded nats: not ready for connections (see log)")
	}

	connOpts := []nats.Option{nats.Name("guardyn-embedded"), nats.InProcessServer(ns)}
	nc, err := nats.Connect(ns.ClientURL(), connOpts...)
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	b, err := newBus(nc, log)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	b.embedded = ns
	return b, nil
}

func readyWait(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 10 * time.Second
}

// Connect dials a NATS cluster at url (comma-separated for several seeds)
// and reconnects for ever; extra options (credentials, TLS) are appended.
// Streams it creates have one replica; Dial configures replicas, credentials
// and TLS and checks JetStream.
func Connect(url string, log *slog.Logger, opts ...nats.Option) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := []nats.Option{
		nats.Name("guardyn"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", slog.Any("error", err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", slog.String("url", nc.ConnectedUrlRedacted()))
		}),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	b, err := newBus(nc, log)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

func newBus(nc *nats.Conn, log *slog.Logger) (*Bus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Bus{nc: nc, js: js, log: log}, nil
}

// Conn is the underlying connection, for what the helpers do not cover.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream is the JetStream context of the connection.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// ClientURL is where other local processes can reach the embedded server
// when it was started with Listen; "" otherwise.
func (b *Bus) ClientURL() string {
	if b.embedded == nil || b.embedded.Addr() == nil {
		return ""
	}
	return b.embedded.ClientURL()
}

// Ready reports whether the connection is up and JetStream answers, for readiness
// probes: a NATS server whose JetStream is down or disabled accepts core messages but
// loses every durable event and consumer.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("nats: %s", b.nc.Status())
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("nats jetstream: %w", err)
	}
	return nil
}

// Close flushes pending publishes, closes the connection and, when
// embedded, shuts the server down (JetStream data is synced to disk).
func (b *Bus) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	flushErr := b.nc.FlushWithContext(ctx)
	if errors.Is(flushErr, nats.ErrConnectionClosed) {
		flushErr = nil
	}
	b.nc.Close()
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
	if flushErr != nil {
		return fmt.Errorf("flush nats: %w", flushErr)
	}
	return nil
}

// serverLogger routes nats-server logs to slog. Fatalf must not exit the
// process as the default logger would: start-up failure is reported by
// StartEmbedded instead. The server's id, the public key it generates for itself,
// is logged as "<server-id>": no key goes into Guardyn's logs (docs/observability.md).
type serverLogger struct {
	log *slog.Logger
	id  string
}

func (l serverLogger) text(format string, v []any) string {
	msg := fmt.Sprintf(format, v...)
	if l.id != "" {
		msg = strings.ReplaceAll(msg, l.id, "<server-id>")
	}
	return msg
}

// Noticef carries the server's startup banner and routine notices: debug level, so a
// Guardyn log at info shows Guardyn's own events.
func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(l.text(format, v)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(l.text(format, v)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(l.text(format, v)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(l.text(format, v)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(l.text(format, v)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(l.text(format, v)) }
