// Command mocktikvserver runs the all-in-one platform as tools/devserver does, with its
// kv store on client-go's in-process mock TiKV cluster (under -data-dir) instead of the
// embedded store: no TiKV or PD server can run here, so this is how the load generator
// measures the platform on the distributed backends together, the message store on
// -messages cql://... and the bus on -nats-url with -nats-replicas, as
//
//	go build -o /tmp/mocktikvserver ./tools/loadgen/mocktikvserver
//	go run ./tools/loadgen throughput -server-bin /tmp/mocktikvserver \
//	    -server-args '-messages cql://127.0.0.1:9042/lg?replication=1 -nats-url nats://... -nats-replicas 3'
//
// It takes the devserver's flags (libs/config) but -kv, and is for load tests only: the
// mock cluster runs in this process, so its CPU counts as the server's.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/tikv/client-go/v2/testutils"
	tikvclient "github.com/tikv/client-go/v2/tikv"

	"github.com/guardyn/guardyn/libs/config"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	"github.com/guardyn/guardyn/libs/kv/tikv"
	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mocktikvserver:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, printing the line tools/loadgen waits for to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	var common config.Common
	fs := flag.NewFlagSet("mocktikvserver", flag.ContinueOnError)
	binder := config.NewBinder(fs, os.LookupEnv)
	common.Bind(binder)
	var rateLimits bool
	binder.Bool(&rateLimits, "rate-limits", true, "rate-limit callers per action (turn off only for load tests on loopback)")
	if err := binder.Parse(args); err != nil {
		return err
	}
	if err := common.Validate(); err != nil {
		return err
	}
	if common.KV != "" {
		return fmt.Errorf("-kv %q: this server's kv store is always the mock TiKV", common.KV)
	}
	obs, err := observe.New(ctx, common.Observe("guardyn", os.Stderr))
	if err != nil {
		return err
	}
	defer obs.Close(context.Background())

	client, cluster, pd, err := testutils.NewMockTiKV(filepath.Join(common.DataDir, "mocktikv"), nil)
	if err != nil {
		return fmt.Errorf("start mock tikv: %w", err)
	}
	testutils.BootstrapWithSingleStore(cluster)
	kvs, err := tikvclient.NewTestTiKVStore(client, pd, nil, nil, 0)
	if err != nil {
		return fmt.Errorf("open mock tikv store: %w", err)
	}
	cfg := platform.Config{
		DataDir: common.DataDir, KVStore: kvbackend.Cluster(tikv.New(kvs, tikv.Options{})),
		GRPCAddr: common.GRPCAddr, AdminAddr: common.AdminAddr,
		NATS: common.NATS(nil), Messages: common.Messages, DrainTimeout: common.DrainTimeout,
		Observer: obs,
	}
	if !rateLimits {
		cfg.Limits = ratelimit.Policy{}
	}
	p, err := platform.Start(ctx, cfg)
	if err != nil {
		return err
	}
	// The line tools/loadgen waits for, as the devserver prints it.
	fmt.Fprintf(out, "guardyn: gRPC on %s, admin on %s, data in %s (kv on mock TiKV)\n", p.GRPCAddr(), p.AdminAddr(), cfg.DataDir)
	return p.Run(ctx)
}
