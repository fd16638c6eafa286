// Package clienttest runs a whole Guardyn platform in the test process and creates client
// profiles against it, for the client library's tests and the end-to-end tests
// (docs/cli.md describes the walkthrough they follow).
package clienttest

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/grpcweb"
	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// Passphrase unlocks every test profile.
const Passphrase = "test passphrase, not secret"

// Platform is an all-in-one server running in this process, reached over real gRPC on
// loopback, with its data directory and the directory under which profiles are created.
type Platform struct {
	DataDir, Profiles string
	Addr              string
	Conn              *grpc.ClientConn
	// Web is the base URL of the platform's web port (gRPC-Web, as browsers call it), or
	// empty when the platform has none (StartWeb starts one that has).
	Web string
}

// StartWeb starts a platform that also serves browsers on a web port, for tests of the
// client over gRPC-Web (WebConfig).
func StartWeb(t testing.TB) *Platform {
	t.Helper()
	return StartWith(t, func(c *platform.Config) { c.WebAddr = "127.0.0.1:0" })
}

// Start starts a platform with the default rate limits that stops when the test ends.
func Start(t testing.TB) *Platform {
	t.Helper()
	return StartWithLimits(t, nil)
}

// StartWithLimits starts a platform with the given rate-limit policy (nil: the default; an
// empty policy disables rate limiting, for tests that exhaust prekeys on purpose).
func StartWithLimits(t testing.TB, limits ratelimit.Policy) *Platform {
	t.Helper()
	return StartWith(t, func(c *platform.Config) { c.Limits = limits })
}

// StartWith starts a platform with the default configuration adjusted by tune, for tests
// that put a store elsewhere (the kv store on a mock TiKV cluster) or change limits.
func StartWith(t testing.TB, tune func(*platform.Config)) *Platform {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := platform.Config{
		DataDir: filepath.Join(dir, "server"), GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
	}
	tune(&cfg)
	p, err := platform.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start platform: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	conn, err := grpc.NewClient(p.GRPCAddr().String(), append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		cancel()
		t.Fatalf("dial platform: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("platform run: %v", err)
		}
	})
	pl := &Platform{DataDir: filepath.Join(dir, "server"), Profiles: filepath.Join(dir, "profiles"), Addr: p.GRPCAddr().String(), Conn: conn}
	if a := p.WebAddr(); a != nil {
		pl.Web = "http://" + a.String()
	}
	return pl
}

// WebConfig is Config for a device that reaches the platform as the browser app does: over
// gRPC-Web on the web port (through the HTTP client hc; nil means the default), which
// carries no request streams.
func (p *Platform) WebConfig(t testing.TB, name string, hc *http.Client) client.Config {
	t.Helper()
	if p.Web == "" {
		t.Fatal("clienttest: the platform has no web port (start it with StartWeb)")
	}
	cfg := p.Config(name)
	var httpc connect.HTTPClient = http.DefaultClient
	if hc != nil {
		httpc = hc
	}
	cfg.Conn = grpcweb.New(httpc, p.Web, grpcweb.GRPCWeb)
	return cfg
}

// Config returns the configuration of the profile called name, with cheap scrypt
// parameters so tests stay fast.
func (p *Platform) Config(name string) client.Config {
	return client.Config{
		Home: filepath.Join(p.Profiles, name), Passphrase: []byte(Passphrase), Conn: p.Conn,
		VaultParams: vault.Params{LogN: vault.MinLogN, R: 8, P: 1},
	}
}

// Dial opens another connection to the platform, for tests that watch calls through
// interceptors; it closes when the test ends.
func (p *Platform) Dial(t testing.TB, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(p.Addr, append(append(client.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials())), opts...)...)
	if err != nil {
		t.Fatalf("dial platform: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Context returns a context that ends with the test or after a minute.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Register registers username with a profile of the same name.
func (p *Platform) Register(t testing.TB, username string) *client.Client {
	t.Helper()
	c, err := client.Register(Context(t), p.Config(username), username, username+"'s phone")
	if err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
	t.Cleanup(c.Close)
	return c
}

// Link adds a device with profile name to existing's account, approved by existing.
func (p *Platform) Link(t testing.TB, existing *client.Client, name string) *client.Client {
	t.Helper()
	ctx := Context(t)
	who, err := existing.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	c, req, err := client.StartLink(ctx, p.Config(name), who.Username, name)
	if err != nil {
		t.Fatalf("start link: %v", err)
	}
	t.Cleanup(c.Close)
	links, err := existing.PendingLinks(ctx)
	if err != nil {
		t.Fatalf("pending links: %v", err)
	}
	if len(links) != 1 || links[0].ID != req.ID || links[0].Fingerprint != req.Fingerprint {
		t.Fatalf("pending links = %+v, want the one with id %s and fingerprint %s", links, req.ID, req.Fingerprint)
	}
	if _, err := existing.Approve(ctx, req.ID); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if err := c.WaitLink(ctx, 10*time.Millisecond); err != nil {
		t.Fatalf("wait link: %v", err)
	}
	return c
}

// Drain runs one Listen over the stored backlog and returns its events, without the final
// EventBacklogDone.
func Drain(t testing.TB, c *client.Client) []client.Event {
	t.Helper()
	var evs []client.Event
	if err := c.Listen(Context(t), true, func(ev client.Event) {
		if ev.Kind != client.EventBacklogDone {
			evs = append(evs, ev)
		}
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	return evs
}
