// Command media runs the Guardyn media service as its own process, beside the auth service
// (services/auth/cmd/auth) and the NATS server they share. It keeps its records and the
// ciphertext in embedded stores under -data-dir, verifies access tokens with the token key
// it fetches once from the auth service's GetTrustRoot at -auth-addr, and learns of removed
// devices over NATS.
//
//	media -data-dir /var/lib/guardyn/media -grpc-addr :7463 -admin-addr :7464 \
//	      -nats-url nats://nats:4222 -auth-addr auth:7443
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
	fs := flag.NewFlagSet("media", flag.ExitOnError)
	binder := config.NewBinder(fs, os.LookupEnv)
	opts.Common.Bind(binder)
	binder.String(&opts.authAddr, "auth-addr", "127.0.0.1:7443", "gRPC address of the auth service, for its token key")
	binder.Bool(&opts.rateLimits, "rate-limits", true, "rate-limit callers per action (turn off only for load tests on loopback)")
	if err := binder.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "media:", err)
		os.Exit(2)
	}
	if err := opts.Common.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "media:", err)
		os.Exit(2)
	}
	if opts.NATSURL == "" {
		fmt.Fprintln(os.Stderr, "media: -nats-url is required: removed devices are announced there")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "media:", err)
		os.Exit(1)
	}
}
