package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/guardyn/guardyn/apps/web/bundle"
)

// defaultWebApp is where the web app is built, relative to the module root.
const defaultWebApp = "apps/web/dist"

// ensureWebApp builds the web app (package bundle) when dir is the default and holds none
// yet, and the server runs from a checkout (the module root is the working directory): so
// `go run ./tools/devserver` in a fresh clone serves a working app, in one command. Another
// directory is never built into; a build that fails leaves the API served alone.
func ensureWebApp(ctx context.Context, dir string) {
	if dir != defaultWebApp {
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "index.html")); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	if _, err := os.Stat(filepath.FromSlash(bundle.WasmPackage)); err != nil {
		return // not a checkout's root
	}
	fmt.Fprintf(os.Stderr, "devserver: building the web app into %s (go run ./apps/web/build; about a minute the first time)\n", dir)
	if _, err := bundle.Build(ctx, bundle.Options{ModuleDir: ".", Out: dir}); err != nil {
		fmt.Fprintf(os.Stderr, "devserver: %v\n", err)
	}
}
