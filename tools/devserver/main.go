// Command devserver runs the whole Guardyn platform in one process on the embedded
// default: every service on one gRPC port, an embedded durable store and an embedded NATS
// JetStream server, all under one data directory.
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
	"os"
	"os/signal"
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
		Observer: obs,
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
	return p.Run(ctx)
}
