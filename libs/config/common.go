package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/guardyn/guardyn/libs/observe"
)

// Common is the configuration every Guardyn binary shares.
type Common struct {
	// Domain is the one public DNS name all public names derive from
	// (user addresses, TLS names, push topics).
	Domain    string
	DataDir   string
	GRPCAddr  string
	AdminAddr string
	// NATSURL selects a NATS cluster; empty runs NATS embedded in DataDir.
	NATSURL string
	// Messages selects the message store: empty keeps it embedded in DataDir, a
	// cql://h1:9042,h2:9042/keyspace?dc=dc1 address a Cassandra or ScyllaDB cluster.
	Messages     string
	LogLevel     string
	Reflection   bool // gRPC server reflection; development only
	DrainTimeout time.Duration
	// OTLPEndpoint is the host:port of an OTLP/gRPC trace collector; empty: no traces.
	OTLPEndpoint string
	OTLPInsecure bool    // plaintext to the collector (loopback, same pod)
	TraceRatio   float64 // fraction of calls traced; 0 means every call
}

// Bind registers the common flags, with defaults for a local single-node
// run (loopback only: production sets the listen addresses explicitly).
func (c *Common) Bind(b *Binder) {
	b.String(&c.Domain, "domain", "localhost", "public DNS domain of this deployment")
	b.String(&c.DataDir, "data-dir", "./data", "directory for all durable state (embedded stores, JetStream)")
	b.String(&c.GRPCAddr, "grpc-addr", "127.0.0.1:7443", "gRPC listen address")
	b.String(&c.AdminAddr, "admin-addr", "127.0.0.1:7444", "admin HTTP listen address (/healthz, /readyz, /metrics)")
	b.String(&c.NATSURL, "nats-url", "", "NATS cluster URL; empty runs NATS embedded")
	b.String(&c.Messages, "messages", "", "message store: empty keeps it embedded in data-dir; cql://h1:9042,h2:9042/keyspace?dc=dc1 uses Cassandra or ScyllaDB")
	b.String(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	b.Bool(&c.Reflection, "reflection", false, "enable gRPC server reflection (development only)")
	b.Duration(&c.DrainTimeout, "drain-timeout", 10*time.Second, "how long shutdown waits for running calls")
	b.String(&c.OTLPEndpoint, "otlp-endpoint", "", "host:port of an OTLP/gRPC collector to send traces to; empty sends none")
	b.Bool(&c.OTLPInsecure, "otlp-insecure", false, "send traces without TLS (a collector on loopback or in the same pod)")
	b.Float64(&c.TraceRatio, "trace-ratio", 1, "fraction of calls traced when -otlp-endpoint is set, in [0, 1] (0: every call)")
}

// Validate checks the values after parsing.
func (c *Common) Validate() error {
	var errs []error
	if err := validDomain(c.Domain); err != nil {
		errs = append(errs, err)
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir is empty"))
	}
	if c.GRPCAddr == "" || c.AdminAddr == "" {
		errs = append(errs, errors.New("grpc-addr and admin-addr are required"))
	}
	if _, err := c.level(); err != nil {
		errs = append(errs, err)
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("drain-timeout %v must be positive", c.DrainTimeout))
	}
	if !(c.TraceRatio >= 0 && c.TraceRatio <= 1) {
		errs = append(errs, fmt.Errorf("trace-ratio %v: want a fraction in [0, 1] (0: every call)", c.TraceRatio))
	}
	return errors.Join(errs...)
}

// validDomain accepts a DNS name of LDH labels (RFC 1123), lower-case.
func validDomain(d string) error {
	if d == "" || len(d) > 253 {
		return fmt.Errorf("domain %q: want 1..253 characters", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain %q: bad label %q", d, label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("domain %q: label %q may hold only a-z, 0-9 and '-'", d, label)
			}
		}
	}
	return nil
}

func (c *Common) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

// Logger returns the JSON logger for LogLevel (info if invalid; Validate
// reports that).
func (c *Common) Logger(w io.Writer) *slog.Logger {
	l, err := c.level()
	if err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// Observe is the observability configuration of the binary named service: JSON logs to w
// at LogLevel, traces to OTLPEndpoint.
func (c *Common) Observe(service string, w io.Writer) observe.Config {
	l, err := c.level()
	if err != nil {
		l = slog.LevelInfo
	}
	return observe.Config{
		Service: service, LogLevel: l, LogWriter: w,
		OTLPEndpoint: c.OTLPEndpoint, OTLPInsecure: c.OTLPInsecure, TraceRatio: c.TraceRatio,
	}
}

// EnsureDataDir creates DataDir (owner-only) if missing and returns the
// path of sub inside it, also created.
func (c *Common) EnsureDataDir(sub string) (string, error) {
	dir := filepath.Join(c.DataDir, sub)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return dir, nil
}
