// Command notification runs the Guardyn push service as its own process, beside the auth
// and messaging services and the NATS server they share. It keeps push targets and dead
// letters in an embedded store under -data-dir, consumes delivery notices from NATS
// JetStream, and pushes through the providers whose credentials it is given.
//
//	notification -data-dir /var/lib/guardyn/notification -grpc-addr :7473 -admin-addr :7474 \
//	             -nats-url nats://nats:4222 -auth-addr auth:7443 \
//	             -vapid-subject mailto:ops@example.org \
//	             -apns-key-file AuthKey.p8 -apns-key-id ABC123 -apns-team-id DEF456 \
//	             -fcm-credentials-file service-account.json
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
	fs := flag.NewFlagSet("notification", flag.ExitOnError)
	binder := config.NewBinder(fs, os.LookupEnv)
	opts.Common.Bind(binder)
	binder.String(&opts.authAddr, "auth-addr", "127.0.0.1:7443", "gRPC address of the auth service, for its token key")
	binder.Bool(&opts.rateLimits, "rate-limits", true, "rate-limit callers per action")
	binder.String(&opts.files.VAPIDKeyFile, "vapid-key-file", "", "Web Push VAPID key (created if missing; default <data-dir>/keys/vapid.key)")
	binder.String(&opts.files.VAPIDSubject, "vapid-subject", "", "VAPID contact, mailto: or https: URL; enables Web Push")
	binder.String(&opts.files.APNsKeyFile, "apns-key-file", "", "APNs .p8 signing key; enables APNs")
	binder.String(&opts.files.APNsKeyID, "apns-key-id", "", "APNs key id")
	binder.String(&opts.files.APNsTeamID, "apns-team-id", "", "Apple developer team id")
	binder.String(&opts.files.FCMCredentialsFile, "fcm-credentials-file", "", "Firebase service account JSON; enables FCM")
	if err := binder.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(2)
	}
	if err := opts.Common.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(2)
	}
	if opts.NATSURL == "" {
		fmt.Fprintln(os.Stderr, "notification: -nats-url is required: the service shares NATS with the messaging service")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(1)
	}
}
