package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/guardyn/guardyn/tools/devserver/web"
)

// Config is what the server serves, and where.
type Config struct {
	Addr, AdminAddr string // listen addresses of the app and of the probes
	App             string // the built app's directory
	TLS             bool   // a proxy in front serves the origin over TLS
}

// Timeouts of the app's listener. Files only: no request has a body, no response streams,
// so unlike the all-in-one server's web port (whose Subscribe streams last hours) every
// exchange is bounded.
const (
	readHeaderTimeout = 10 * time.Second
	writeTimeout      = 2 * time.Minute // the largest asset (the wasm) over a slow link
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 10 * time.Second
)

// Run serves cfg until ctx ends, then drains for up to shutdownTimeout. listening, when
// set, receives the bound addresses of the app and of the probes.
func Run(ctx context.Context, cfg Config, listening func(app, admin net.Addr)) error {
	// An os.Root, unlike os.DirFS, never follows a link out of the app's directory.
	root, err := os.OpenRoot(cfg.App)
	if err != nil {
		return fmt.Errorf("web app: %w", err)
	}
	defer root.Close()
	app := root.FS()
	h, err := web.NewAppHandler(web.Config{App: app, TLS: cfg.TLS})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	aln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		ln.Close()
		return err
	}
	if listening != nil {
		listening(ln.Addr(), aln.Addr())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, WriteTimeout: writeTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
	admin := &http.Server{Handler: adminMux(app), ReadHeaderTimeout: readHeaderTimeout, WriteTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{srv, ln}, {admin, aln}} {
		g.Go(func() error {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		return errors.Join(srv.Shutdown(sctx), admin.Shutdown(sctx))
	})
	return g.Wait()
}

// adminMux answers the probes: alive while the process runs, ready while the app's
// index.html can be read (a missing or unmounted app is not ready, so Envoy sends
// nothing to it).
func adminMux(app fs.FS) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if info, err := fs.Stat(app, "index.html"); err != nil || !info.Mode().IsRegular() {
			http.Error(w, "no index.html in the web app", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
