// Command guardyn-web serves the web app's files in a cluster, behind Envoy: Envoy routes
// the API (gRPC-Web, Connect) to the services and every other GET or HEAD here. It serves
// them with tools/devserver/web's handler, the one the all-in-one server's web port uses,
// so the app gets the same Content-Security-Policy, security headers, caching,
// precompressed variants and origin policy wherever it is served (docs/web.md).
//
//	guardyn-web -app /usr/local/share/guardyn/web -addr :8080 -admin-addr :7444 -tls
//
// -tls says a proxy in front serves the origin over TLS (the Ingress): responses then carry
// Strict-Transport-Security, and the origin is https. Every flag can be set as
// GUARDYN_<FLAG>. /healthz and /readyz (index.html readable) answer on the admin address.
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
	var cfg Config
	fs := flag.NewFlagSet("guardyn-web", flag.ExitOnError)
	b := config.NewBinder(fs, os.LookupEnv)
	b.String(&cfg.Addr, "addr", ":8080", "listen address of the app's files (Envoy's web cluster)")
	b.String(&cfg.AdminAddr, "admin-addr", ":7444", "listen address of /healthz and /readyz")
	b.String(&cfg.App, "app", "/usr/local/share/guardyn/web", "directory of the built web app, index.html at its root (where the release image carries it)")
	b.Bool(&cfg.TLS, "tls", false, "the origin is served over TLS by a proxy in front (adds Strict-Transport-Security)")
	if err := b.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "guardyn-web:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg, nil); err != nil {
		fmt.Fprintln(os.Stderr, "guardyn-web:", err)
		os.Exit(1)
	}
}
