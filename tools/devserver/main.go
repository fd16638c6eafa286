// Command devserver runs the whole Guardyn platform in one process on the embedded
// default: every service on one gRPC port, an embedded durable store and an embedded NATS
// JetStream server, all under one data directory.
//
//	go run ./tools/devserver -data-dir ./data
//
// Flags may also be set by environment: GUARDYN_DATA_DIR, GUARDYN_GRPC_ADDR,
// GUARDYN_ADMIN_ADDR. SIGTERM or SIGINT drains calls and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/guardyn/guardyn/tools/devserver/platform"
)

func main() {
	cfg := platform.Config{Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil))}
	flag.StringVar(&cfg.DataDir, "data-dir", env("GUARDYN_DATA_DIR", "./data"), "directory for all durable state (env GUARDYN_DATA_DIR)")
	flag.StringVar(&cfg.GRPCAddr, "grpc-addr", env("GUARDYN_GRPC_ADDR", "127.0.0.1:7443"), "gRPC listen address (env GUARDYN_GRPC_ADDR)")
	flag.StringVar(&cfg.AdminAddr, "admin-addr", env("GUARDYN_ADMIN_ADDR", "127.0.0.1:7444"), "admin HTTP listen address for /healthz, /readyz, /metrics (env GUARDYN_ADMIN_ADDR)")
	flag.BoolVar(&cfg.Reflection, "reflection", false, "enable gRPC server reflection (development only)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
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

func env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return fallback
}
