// Command build writes the web app into apps/web/dist (package bundle):
//
//	go run ./apps/web/build [-o apps/web/dist]
//
// Run it from the module root. go run ./tools/devserver builds the app itself when
// apps/web/dist is missing.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/guardyn/guardyn/apps/web/bundle"
)

func main() {
	out := flag.String("o", "apps/web/dist", "output directory (replaced)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := bundle.Build(ctx, bundle.Options{ModuleDir: ".", Out: *out})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("web app in %s: %s\n", *out, res.Assets["app.wasm"])
}
