// Command messaging runs the Guardyn messaging service as its own process, beside the
// auth service (services/auth/cmd/auth) and a NATS server they share. It keeps inboxes and
// the group registry in embedded stores under -data-dir, asks the auth service over NATS
// for device lists, and verifies access tokens with the token key it fetches once from
// the auth service's GetTrustRoot at -auth-addr.
//
//	messaging -data-dir /var/lib/guardyn/messaging -grpc-addr :7453 -admin-addr :7454 \
//	          -nats-url nats://nats:4222 -auth-addr auth:7443
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
	fs := flag.NewFlagSet("messaging", flag.ExitOnError)
	binder := config.NewBinder(fs, os.LookupEnv)
	opts.Common.Bind(binder)
	binder.String(&opts.authAddr, "auth-addr", "127.0.0.1:7443", "gRPC address of the auth service, for its token key")
	binder.Bool(&opts.rateLimits, "rate-limits", true, "rate-limit callers per action (turn off only for load tests on loopback)")
	if err := binder.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "messaging:", err)
		os.Exit(2)
	}
	if err := opts.Common.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "messaging:", err)
		os.Exit(2)
	}
	if opts.NATSURL == "" {
		fmt.Fprintln(os.Stderr, "messaging: -nats-url is required: the service shares NATS with the auth service")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "messaging:", err)
		os.Exit(1)
	}
}
