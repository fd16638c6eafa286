package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/tools/devserver/web"
)

// startServer runs the server on loopback over dir and returns the app's and the probes' URLs.
func startServer(t *testing.T, dir string) (appURL, adminURL string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", App: dir, TLS: true},
			func(app, admin net.Addr) { addrs <- [2]net.Addr{app, admin} })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	select {
	case a := <-addrs:
		return "http://" + a[0].String(), "http://" + a[1].String()
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return "", ""
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// The cluster's app server answers as the all-in-one server's web port does: the same
// security headers (web.SecurityHeaders, with HSTS: the Ingress serves TLS), caching by
// name, precompressed variants, GET and HEAD only, foreign origins refused; its probes
// live on the admin address only.
func TestServesTheApp(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"index.html":            "<!doctype html><title>Guardyn</title>",
		"app.3f9a2c1d.js":       "identity js",
		"app.3f9a2c1d.js.br":    "brotli js",
		"main-5XJFG3KT.wasm":    "\x00asm",
		"main-5XJFG3KT.wasm.gz": "gzip wasm",
		".env":                  "SECRET=1",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	appURL, adminURL := startServer(t, dir)

	want := web.SecurityHeaders(true)
	if want.Get("Strict-Transport-Security") == "" || want.Get("Content-Security-Policy") == "" {
		t.Fatalf("web.SecurityHeaders(true) = %v: want CSP and HSTS", want)
	}
	for _, tc := range []struct {
		path, accept, body, encoding, cache string
	}{
		{"/", "", "<!doctype html><title>Guardyn</title>", "", "no-cache"},
		{"/index.html", "gzip, br", "<!doctype html><title>Guardyn</title>", "", "no-cache"},
		{"/app.3f9a2c1d.js", "gzip, br", "brotli js", "br", "public, max-age=31536000, immutable"},
		{"/main-5XJFG3KT.wasm", "gzip, br", "gzip wasm", "gzip", "public, max-age=31536000, immutable"},
		{"/main-5XJFG3KT.wasm", "", "\x00asm", "", "public, max-age=31536000, immutable"},
	} {
		resp, body := do(t, http.MethodGet, appURL+tc.path, map[string]string{"Accept-Encoding": tc.accept})
		if resp.StatusCode != http.StatusOK || body != tc.body {
			t.Errorf("GET %s (Accept-Encoding %q): %d %q, want 200 %q", tc.path, tc.accept, resp.StatusCode, body, tc.body)
		}
		if got := resp.Header.Get("Content-Encoding"); got != tc.encoding {
			t.Errorf("GET %s: Content-Encoding %q, want %q", tc.path, got, tc.encoding)
		}
		if got := resp.Header.Get("Cache-Control"); got != tc.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, got, tc.cache)
		}
		for k := range want {
			if got := resp.Header.Get(k); got != want.Get(k) {
				t.Errorf("GET %s: %s %q, want %q", tc.path, k, got, want.Get(k))
			}
		}
	}
	for _, tc := range []struct {
		method, url string
		hdr         map[string]string
		status      int
	}{
		{http.MethodPost, appURL + "/", nil, http.StatusMethodNotAllowed},
		{http.MethodGet, appURL + "/.env", nil, http.StatusNotFound},
		{http.MethodGet, appURL + "/healthz", nil, http.StatusNotFound},
		{http.MethodGet, appURL + "/guardyn.auth.v1.AuthService/Register", nil, http.StatusNotFound},
		{http.MethodGet, appURL + "/", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{http.MethodGet, adminURL + "/healthz", nil, http.StatusOK},
		{http.MethodGet, adminURL + "/readyz", nil, http.StatusOK},
		{http.MethodGet, adminURL + "/index.html", nil, http.StatusNotFound},
	} {
		if resp, body := do(t, tc.method, tc.url, tc.hdr); resp.StatusCode != tc.status {
			t.Errorf("%s %s %v: %d %q, want %d", tc.method, tc.url, tc.hdr, resp.StatusCode, body, tc.status)
		}
	}
	// Same origin (the Ingress's https origin, the Host Envoy passes on) is served.
	req, _ := http.NewRequest(http.MethodGet, appURL+"/", nil)
	req.Header.Set("Origin", "https://"+req.URL.Host)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("same-origin GET /: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Without index.html the pod is not ready, so Envoy stops sending to it.
	if err := os.Remove(filepath.Join(dir, "index.html")); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, http.MethodGet, adminURL+"/readyz", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz without index.html: %d, want 503", resp.StatusCode)
	}
}

func TestRefusesAMissingApp(t *testing.T) {
	err := Run(context.Background(), Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", App: filepath.Join(t.TempDir(), "none")}, nil)
	if err == nil {
		t.Fatal("Run with no app directory: nil error")
	}
}
