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

	"github.com/guardyn/guardyn/libs/bus"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	"github.com/guardyn/guardyn/libs/observe"
)

// Common is the configuration every Guardyn binary shares.
type Common struct {
	// Domain is the one public DNS name all public names derive from
	// (user addresses, TLS names, push topics).
	Domain  string
	DataDir string
	// KV selects the kv store (libs/kv/backend): empty keeps it embedded in DataDir, a
	// tikv://pd1:2379,pd2:2379 address a TiKV cluster.
	KV        string
	GRPCAddr  string
	AdminAddr string
	// NATSURL selects a NATS cluster (comma-separated seeds); empty runs NATS
	// embedded in DataDir. The other NATS fields apply only to a cluster.
	NATSURL      string
	NATSCreds    string // creds file (JWT and nkey seed)
	NATSUser     string
	NATSPassword string // prefer GUARDYN_NATS_PASSWORD: a flag shows in ps
	NATSToken    string // prefer GUARDYN_NATS_TOKEN
	NATSCA       string // PEM CA bundle verifying the servers
	NATSCert     string // client certificate (PEM) for mutual TLS
	NATSKey      string // its key
	// NATSReplicas is how many servers keep each stream and bucket: 3 in a
	// three-server cluster survives losing any one server.
	NATSReplicas int
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

// DefaultTraceRatio is the fraction of calls traced unless -trace-ratio says otherwise:
// tracing every call (1) cost a fifth of the server's CPU per message and more than the
// 10% of throughput the platform allows for observability, where a tenth of the calls
// costs nothing measurable (docs/observability.md, "Overhead"). Tests and development
// trace every call with -trace-ratio 1.
const DefaultTraceRatio = 0.1

// Bind registers the common flags, with defaults for a local single-node
// run (loopback only: production sets the listen addresses explicitly).
func (c *Common) Bind(b *Binder) {
	b.String(&c.Domain, "domain", "localhost", "public DNS domain of this deployment")
	b.String(&c.DataDir, "data-dir", "./data", "directory for all durable state (embedded stores, JetStream)")
	b.String(&c.KV, "kv", "", "kv store: empty keeps it embedded in data-dir; tikv://pd1:2379,pd2:2379[?prefix=p/&ca=ca.pem&cert=c.pem&key=k.pem] uses a TiKV cluster")
	b.String(&c.GRPCAddr, "grpc-addr", "127.0.0.1:7443", "gRPC listen address")
	b.String(&c.AdminAddr, "admin-addr", "127.0.0.1:7444", "admin HTTP listen address (/healthz, /readyz, /metrics)")
	b.String(&c.NATSURL, "nats-url", "", "NATS cluster URLs, comma-separated (nats:// or tls://); empty runs NATS embedded")
	b.String(&c.NATSCreds, "nats-creds", "", "NATS credentials file (JWT and nkey seed)")
	b.String(&c.NATSUser, "nats-user", "", "NATS user name (with -nats-password)")
	b.String(&c.NATSPassword, "nats-password", "", "NATS password (better set in the environment: flags show in ps)")
	b.String(&c.NATSToken, "nats-token", "", "NATS token (better set in the environment: flags show in ps)")
	b.String(&c.NATSCA, "nats-ca", "", "PEM CA bundle that verifies the NATS servers' certificates")
	b.String(&c.NATSCert, "nats-cert", "", "client certificate (PEM) for mutual TLS with NATS")
	b.String(&c.NATSKey, "nats-key", "", "key (PEM) of -nats-cert")
	b.Int(&c.NATSReplicas, "nats-replicas", 1, "servers that keep each JetStream stream and bucket in a NATS cluster (3 survives losing one of three)")
	b.String(&c.Messages, "messages", "", "message store: empty keeps it embedded in data-dir; cql://h1:9042,h2:9042/keyspace?dc=dc1 uses Cassandra or ScyllaDB")
	b.String(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	b.Bool(&c.Reflection, "reflection", false, "enable gRPC server reflection (development only)")
	b.Duration(&c.DrainTimeout, "drain-timeout", 10*time.Second, "how long shutdown waits for running calls")
	b.String(&c.OTLPEndpoint, "otlp-endpoint", "", "host:port of an OTLP/gRPC collector to send traces to; empty sends none")
	b.Bool(&c.OTLPInsecure, "otlp-insecure", false, "send traces without TLS (a collector on loopback or in the same pod)")
	b.Float64(&c.TraceRatio, "trace-ratio", DefaultTraceRatio, "fraction of calls traced when -otlp-endpoint is set, in [0, 1] (0: every call)")
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
	if _, err := kvbackend.Parse(c.KV); err != nil {
		errs = append(errs, fmt.Errorf("kv: %w", err))
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
	if c.NATSURL != "" {
		if err := c.NATS(nil).Validate(); err != nil {
			errs = append(errs, err)
		}
	} else if c.NATSCreds+c.NATSUser+c.NATSPassword+c.NATSToken+c.NATSCA+c.NATSCert+c.NATSKey != "" || c.NATSReplicas > 1 {
		errs = append(errs, errors.New("nats-creds, -user, -password, -token, -ca, -cert, -key and -replicas need -nats-url (embedded NATS has one server and no network clients to authenticate)"))
	}
	if !(c.TraceRatio >= 0 && c.TraceRatio <= 1) {
		errs = append(errs, fmt.Errorf("trace-ratio %v: want a fraction in [0, 1] (0: every call)", c.TraceRatio))
	}
	return errors.Join(errs...)
}

// NATS is how to reach the NATS cluster of NATSURL, for bus.Dial.
func (c *Common) NATS(log *slog.Logger) bus.ClusterOptions {
	return bus.ClusterOptions{
		URLs: c.NATSURL, CredsFile: c.NATSCreds, User: c.NATSUser, Password: c.NATSPassword, Token: c.NATSToken,
		CAFile: c.NATSCA, CertFile: c.NATSCert, KeyFile: c.NATSKey, Replicas: c.NATSReplicas, Logger: log,
	}
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
