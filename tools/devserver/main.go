// Command devserver runs the whole Guardyn platform in one process on the embedded
// default: every service on one gRPC port (and, for browsers, on a web port serving the web
// app and the same services over gRPC-Web: docs/web.md), an embedded durable store and an
// embedded NATS JetStream server, all under one data directory.
//
//	go run ./tools/devserver -data-dir ./data
//
// With -kv tikv://pd1:2379,pd2:2379 (GUARDYN_KV) the kv store is a TiKV cluster instead.
// Every flag can also be set by environment as GUARDYN_<FLAG> (GUARDYN_DATA_DIR,
// GUARDYN_GRPC_ADDR, GUARDYN_NATS_URL, ...); a flag wins over its variable. SIGTERM or
// SIGINT drains calls and exits; streams that only wait (Receive) end at once with
// UNAVAILABLE/SHUTTING_DOWN, and clients reconnect. Under `go run`, stopping the go
// command stops the server too.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/guardyn/guardyn/libs/config"
	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

func main() {
	var common config.Common
	fs := flag.NewFlagSet("devserver", flag.ExitOnError)
	binder := config.NewBinder(fs, os.LookupEnv)
	common.Bind(binder)
	var rateLimits bool
	binder.Bool(&rateLimits, "rate-limits", true, "rate-limit callers per action (turn off only for load tests on loopback)")
	var webAddr, webOrigins string
	binder.String(&webAddr, "web-addr", "auto", "web listen address: the web app and the API over gRPC-Web and Connect for browsers (docs/web.md); auto is "+defaultWebAddr+" beside the default gRPC address, else an ephemeral port on the gRPC host; empty turns it off")
	binder.String(&webOrigins, "web-origins", "", "other origins whose pages may call the API (CORS), comma-separated scheme://host[:port]; the web address's own origin always may")
	var webApp string
	binder.String(&webApp, "web-app", defaultWebApp, "directory of the built web app served on the web address (index.html at its root); missing: the API only")
	var profileDir string
	binder.String(&profileDir, "profile-dir", "", "profile for a load generator: SIGUSR1 starts a CPU profile into this directory, SIGUSR2 stops it; the allocation profile is written on exit")
	if err := binder.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(2)
	}
	if err := common.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	stopWithGoRun() // after the handler is in place: its SIGTERM must drain, not kill
	obs, err := observe.New(ctx, common.Observe("guardyn", os.Stderr))
	if err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(2)
	}
	cfg := platform.Config{
		DataDir: common.DataDir, KV: common.KV, GRPCAddr: common.GRPCAddr, AdminAddr: common.AdminAddr,
		NATS: common.NATS(nil), Messages: common.Messages, Reflection: common.Reflection, DrainTimeout: common.DrainTimeout,
		Observer: obs, WebAddr: autoWebAddr(webAddr, common.GRPCAddr), WebOrigins: splitList(webOrigins),
	}
	if cfg.WebAddr != "" {
		ensureWebApp(ctx, webApp)
	}
	// An os.Root, unlike os.DirFS, never follows a link out of the app's directory.
	if root, err := os.OpenRoot(webApp); err == nil {
		defer root.Close()
		cfg.WebApp = root.FS()
	} else if cfg.WebAddr != "" {
		fmt.Fprintf(os.Stderr, "devserver: no web app in %s (build it: apps/web/README.md); serving the API only on the web address\n", webApp)
	}
	if !rateLimits {
		cfg.Limits = ratelimit.Policy{}
	}
	if profileDir != "" {
		defer profileOnSignals(profileDir)()
	}
	err = run(ctx, cfg)
	// After the server has stopped: the last spans go out before the process ends.
	if cerr := obs.Close(context.Background()); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg platform.Config) error {
	p, err := platform.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("guardyn: gRPC on %s, admin on %s, data in %s\n", p.GRPCAddr(), p.AdminAddr(), cfg.DataDir)
	if addr := p.WebAddr(); addr != nil {
		fmt.Printf("guardyn: web app and gRPC-Web on http://%s/\n", addr)
	}
	return p.Run(ctx)
}

// defaultWebAddr is the web address beside the default gRPC address (7443) and admin
// address (7444).
const defaultWebAddr = "127.0.0.1:7445"

// autoWebAddr resolves -web-addr=auto: the fixed default port only beside the default gRPC
// address, so that servers started with other addresses (tests, load generators) do not
// all reach for one port.
func autoWebAddr(flagValue, grpcAddr string) string {
	if flagValue != "auto" {
		return flagValue
	}
	if grpcAddr == "127.0.0.1:7443" {
		return defaultWebAddr
	}
	host, _, err := net.SplitHostPort(grpcAddr)
	if err != nil {
		return defaultWebAddr
	}
	return net.JoinHostPort(host, "0")
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
