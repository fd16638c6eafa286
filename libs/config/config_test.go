package config

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

type settings struct {
	addr    string
	workers int
	dev     bool
	wait    time.Duration
}

func bind(vars map[string]string) (*Binder, *settings) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b := NewBinder(fs, env(vars))
	s := &settings{}
	b.String(&s.addr, "grpc-addr", ":8443", "address")
	b.Int(&s.workers, "workers", 4, "workers")
	b.Bool(&s.dev, "dev", false, "dev mode")
	b.Duration(&s.wait, "drain-timeout", 10*time.Second, "drain")
	return b, s
}

func TestPrecedence(t *testing.T) {
	vars := map[string]string{
		"GUARDYN_GRPC_ADDR":     ":9000",
		"GUARDYN_WORKERS":       "8",
		"GUARDYN_DEV":           "true",
		"GUARDYN_DRAIN_TIMEOUT": "3s",
	}
	b, s := bind(vars)
	if err := b.Parse([]string{"-workers=16", "-dev=false"}); err != nil {
		t.Fatal(err)
	}
	want := settings{addr: ":9000", workers: 16, dev: false, wait: 3 * time.Second}
	if *s != want {
		t.Errorf("got %+v, want %+v (flag > env > default)", *s, want)
	}

	b, s = bind(nil)
	if err := b.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := (settings{":8443", 4, false, 10 * time.Second}); *s != want {
		t.Errorf("defaults: got %+v, want %+v", *s, want)
	}
}

func TestBadEnvironmentIsAnError(t *testing.T) {
	b, _ := bind(map[string]string{"GUARDYN_WORKERS": "many", "GUARDYN_DRAIN_TIMEOUT": "soon"})
	err := b.Parse(nil)
	if err == nil {
		t.Fatal("malformed environment accepted")
	}
	for _, name := range []string{"GUARDYN_WORKERS", "GUARDYN_DRAIN_TIMEOUT"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	// A flag on the command line makes a bad environment value irrelevant.
	b, _ = bind(map[string]string{"GUARDYN_WORKERS": "many"})
	if err := b.Parse([]string{"-workers", "2"}); err != nil {
		t.Errorf("env overridden by a flag still failed: %v", err)
	}
}

func TestUsageNamesEnvironment(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	var c Common
	c.Bind(NewBinder(fs, env(nil)))
	fs.PrintDefaults()
	for _, name := range []string{"GUARDYN_DOMAIN", "GUARDYN_DATA_DIR", "GUARDYN_NATS_URL"} {
		if !strings.Contains(buf.String(), name) {
			t.Errorf("usage lacks %s", name)
		}
	}
	if EnvName("a.b-c") != "GUARDYN_A_B_C" {
		t.Errorf("EnvName = %q", EnvName("a.b-c"))
	}
}

func TestCommon(t *testing.T) {
	dir := t.TempDir()
	b := NewBinder(flag.NewFlagSet("test", flag.ContinueOnError), env(map[string]string{
		"GUARDYN_DOMAIN":    "chat.example.org",
		"GUARDYN_LOG_LEVEL": "debug",
	}))
	var c Common
	c.Bind(b)
	if err := b.Parse([]string{"-data-dir", dir}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Domain != "chat.example.org" || c.DataDir != dir || c.GRPCAddr != "127.0.0.1:7443" {
		t.Errorf("config = %+v", c)
	}
	if !c.Logger(io.Discard).Enabled(context.Background(), slog.LevelDebug) {
		t.Error("log level from environment not applied")
	}
	// Production traces a sample of the calls by default, not every call
	// (docs/observability.md, "Overhead").
	if c.TraceRatio != 0.1 || c.Observe("test", io.Discard).TraceRatio != 0.1 {
		t.Errorf("default trace ratio %v; want 0.1", c.TraceRatio)
	}
	sub, err := c.EnsureDataDir("jetstream")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sub); err != nil || !st.IsDir() || sub != filepath.Join(dir, "jetstream") {
		t.Errorf("EnsureDataDir = %q, %v", sub, err)
	}
}

func TestCommonValidate(t *testing.T) {
	good := Common{Domain: "example.org", DataDir: "d", GRPCAddr: ":1", AdminAddr: ":2", LogLevel: "info", DrainTimeout: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mutate := range map[string]func(*Common){
		"empty domain":   func(c *Common) { c.Domain = "" },
		"upper-case":     func(c *Common) { c.Domain = "Example.org" },
		"empty label":    func(c *Common) { c.Domain = "example..org" },
		"leading hyphen": func(c *Common) { c.Domain = "-example.org" },
		"scheme":         func(c *Common) { c.Domain = "https://example.org" },
		"long label":     func(c *Common) { c.Domain = strings.Repeat("a", 64) + ".org" },
		"no data dir":    func(c *Common) { c.DataDir = "" },
		"no grpc addr":   func(c *Common) { c.GRPCAddr = "" },
		"bad log level":  func(c *Common) { c.LogLevel = "loud" },
		"zero drain":     func(c *Common) { c.DrainTimeout = 0 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
}

func TestCommonNATSCluster(t *testing.T) {
	b := NewBinder(flag.NewFlagSet("test", flag.ContinueOnError), env(map[string]string{
		"GUARDYN_NATS_URL":      "nats://a:4222,nats://b:4222",
		"GUARDYN_NATS_USER":     "guardyn",
		"GUARDYN_NATS_PASSWORD": "s3cret",
		"GUARDYN_NATS_CA":       "/etc/guardyn/nats-ca.pem",
		"GUARDYN_NATS_REPLICAS": "3",
	}))
	var c Common
	c.Bind(b)
	if err := b.Parse([]string{"-data-dir", t.TempDir(), "-nats-cert", "c.pem", "-nats-key", "k.pem"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	o := c.NATS(nil)
	if o.URLs != "nats://a:4222,nats://b:4222" || o.User != "guardyn" || o.Password != "s3cret" ||
		o.CAFile != "/etc/guardyn/nats-ca.pem" || o.CertFile != "c.pem" || o.KeyFile != "k.pem" || o.Replicas != 3 {
		t.Errorf("cluster options = %+v", o)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-nats-url", "nats://a:4222", "-nats-replicas", "9"}, "replicas 9"},
		{[]string{"-nats-url", "nats://a:4222", "-nats-user", "u"}, "user and password"},
		{[]string{"-nats-replicas", "3"}, "need -nats-url"},
		{[]string{"-nats-creds", "x.creds"}, "need -nats-url"},
	} {
		b := NewBinder(flag.NewFlagSet("test", flag.ContinueOnError), env(nil))
		var c Common
		c.Bind(b)
		if err := b.Parse(append([]string{"-data-dir", t.TempDir()}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: Validate = %v, want %q", tc.args, err, tc.want)
		}
	}
}
