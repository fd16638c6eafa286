// Command auth runs the Guardyn auth service as its own process, for deployments that
// scale services separately (tools/devserver runs every service in one process instead).
// It keeps its state in an embedded store under -data-dir and publishes its events on
// NATS: the cluster at -nats-url, or a NATS server it embeds and exposes on -nats-listen
// for the other services to join.
//
//	auth -data-dir /var/lib/guardyn/auth -grpc-addr :7443 -nats-url nats://nats:4222
//
// -kv tikv://pd1:2379,pd2:2379 keeps the kv state on a TiKV cluster instead of -data-dir.
// Every flag can also be set as GUARDYN_<FLAG>. SIGTERM drains calls and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/guardyn/guardyn/libs/config"
)

func main() {
	var opts options
	fs := flag.NewFlagSet("auth", flag.ExitOnError)
	binder := config.NewBinder(fs, os.LookupEnv)
	opts.Common.Bind(binder)
	binder.String(&opts.natsListen, "nats-listen", "127.0.0.1:4222", "with no -nats-url: where the embedded NATS server accepts the other services")
	binder.Bool(&opts.rateLimits, "rate-limits", true, "rate-limit callers per action (turn off only for load tests on loopback)")
	if err := binder.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(2)
	}
	if err := opts.Common.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}
