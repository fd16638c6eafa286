// Command presence runs the Guardyn presence service as its own process, beside the auth
// and messaging services and the NATS server they share. It keeps privacy settings and last
// seen times in an embedded store under -data-dir, online devices in the NATS presence
// bucket, asks the auth service over NATS for device lists, and verifies access tokens with
// the token key it fetches once from the auth service at -auth-addr.
//
//	presence -data-dir /var/lib/guardyn/presence -grpc-addr :7463 -admin-addr :7464 \
//	         -nats-url nats://nats:4222 -auth-addr auth:7443
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
	fs := flag.NewFlagSet("presence", flag.ExitOnError)
	binder := config.NewBinder(fs, os.LookupEnv)
	opts.Common.Bind(binder)
	binder.String(&opts.authAddr, "auth-addr", "127.0.0.1:7443", "gRPC address of the auth service, for its token key")
	binder.Bool(&opts.rateLimits, "rate-limits", true, "rate-limit callers per action (turn off only for load tests on loopback)")
	if err := binder.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "presence:", err)
		os.Exit(2)
	}
	if err := opts.Common.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "presence:", err)
		os.Exit(2)
	}
	if opts.NATSURL == "" {
		fmt.Fprintln(os.Stderr, "presence: -nats-url is required: the service shares NATS with the messaging service")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "presence:", err)
		os.Exit(1)
	}
}
