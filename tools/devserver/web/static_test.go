package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"google.golang.org/grpc"

	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/tools/devserver/web"
)

// app is a built web app as the server finds it: hashed assets with precompressed
// variants beside them, and files that are not hashed.
var app = fstest.MapFS{
	"index.html":           {Data: []byte("<!doctype html><title>Guardyn</title>")},
	"app.3f9a2c1d.js":      {Data: []byte("identity js")},
	"app.3f9a2c1d.js.br":   {Data: []byte("brotli js")},
	"app.3f9a2c1d.js.gz":   {Data: []byte("gzip js")},
	"main-5XJFG3KT.wasm":   {Data: []byte("\x00asm wasm")},
	"app-settings.js":      {Data: []byte("settings js")},
	"style.0a1b2c3d.css":   {Data: []byte("body{}")},
	"manifest.webmanifest": {Data: []byte("{}")},
	"data.unknownext":      {Data: []byte("??")},
	".env":                 {Data: []byte("SECRET=1")},
	"assets/.hidden.js":    {Data: []byte("hidden")},
	"assets/logo.svg":      {Data: []byte("<svg/>")},
}

func appServer(t *testing.T) *httptest.Server {
	t.Helper()
	g := grpc.NewServer()
	presencev1.RegisterPresenceServiceServer(g, presencev1.UnimplementedPresenceServiceServer{})
	h, err := web.NewHandler(g, web.Config{App: app, MaxMessageBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// The transport must not ask for gzip itself: the test sets Accept-Encoding.
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

func TestStaticFiles(t *testing.T) {
	srv := appServer(t)
	const immutable, revalidate = "public, max-age=31536000, immutable", "no-cache"
	for _, c := range []struct {
		path, accept                      string
		body, typ, encoding, cacheControl string
	}{
		{"/", "", "<!doctype html><title>Guardyn</title>", "text/html; charset=utf-8", "", revalidate},
		{"/index.html", "gzip, br", "<!doctype html><title>Guardyn</title>", "text/html; charset=utf-8", "", revalidate},
		{"/app.3f9a2c1d.js", "gzip, deflate, br, zstd", "brotli js", "text/javascript; charset=utf-8", "br", immutable},
		{"/app.3f9a2c1d.js", "gzip", "gzip js", "text/javascript; charset=utf-8", "gzip", immutable},
		{"/app.3f9a2c1d.js", "br;q=0, gzip;q=0.5", "gzip js", "text/javascript; charset=utf-8", "gzip", immutable},
		{"/app.3f9a2c1d.js", "", "identity js", "text/javascript; charset=utf-8", "", immutable},
		{"/app.3f9a2c1d.js", "identity", "identity js", "text/javascript; charset=utf-8", "", immutable},
		{"/main-5XJFG3KT.wasm", "br", "\x00asm wasm", "application/wasm", "", immutable},
		{"/app-settings.js", "", "settings js", "text/javascript; charset=utf-8", "", revalidate},
		{"/style.0a1b2c3d.css", "", "body{}", "text/css; charset=utf-8", "", immutable},
		{"/manifest.webmanifest", "", "{}", "application/manifest+json", "", revalidate},
		{"/data.unknownext", "", "??", "application/octet-stream", "", revalidate},
		{"/assets/logo.svg", "", "<svg/>", "image/svg+xml", "", revalidate},
	} {
		resp, body := get(t, http.MethodGet, srv.URL+c.path, map[string]string{"Accept-Encoding": c.accept})
		h := resp.Header
		if resp.StatusCode != http.StatusOK || body != c.body || h.Get("Content-Type") != c.typ ||
			h.Get("Content-Encoding") != c.encoding || h.Get("Cache-Control") != c.cacheControl {
			t.Errorf("GET %s (Accept-Encoding %q): %d %q type %q encoding %q cache %q; want %q type %q encoding %q cache %q",
				c.path, c.accept, resp.StatusCode, body, h.Get("Content-Type"), h.Get("Content-Encoding"), h.Get("Cache-Control"),
				c.body, c.typ, c.encoding, c.cacheControl)
		}
		if !strings.Contains(h.Get("Vary"), "Accept-Encoding") {
			t.Errorf("GET %s: Vary %q lacks Accept-Encoding", c.path, h.Values("Vary"))
		}
		checkSecurityHeaders(t, "GET "+c.path, h)
	}

	// Revalidation: the ETag of the representation answers 304.
	resp, _ := get(t, http.MethodGet, srv.URL+"/", nil)
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("index.html has no ETag")
	}
	if resp, body := get(t, http.MethodGet, srv.URL+"/", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("revalidating index.html: %d %q, want 304", resp.StatusCode, body)
	}
	if resp, _ := get(t, http.MethodHead, srv.URL+"/app.3f9a2c1d.js", map[string]string{"Accept-Encoding": "br"}); resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "br" {
		t.Errorf("HEAD: %d, encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}

	// Hidden files, directories and paths out of the app are not served.
	for _, p := range []string{"/.env", "/assets/.hidden.js", "/assets", "/assets/", "/../etc/passwd", "/%2e%2e/etc/passwd", "/assets/../.env", "//index.html", "/missing.js"} {
		if resp, body := get(t, http.MethodGet, srv.URL+p, nil); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "SECRET") {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := get(t, http.MethodDelete, srv.URL+"/index.html", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d, want 405", resp.StatusCode)
	}
}

// checkSecurityHeaders asserts the headers every web response carries.
func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self' 'wasm-unsafe-eval'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "object-src", "require-trusted-types-for 'script'"} {
		if want == "object-src" {
			// default-src 'none' covers objects; an explicit object-src must not widen it.
			if strings.Contains(csp, "object-src") && !strings.Contains(csp, "object-src 'none'") {
				t.Errorf("%s: CSP %q widens object-src", what, csp)
			}
			continue
		}
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", what, csp, want)
		}
	}
	for _, bad := range []string{"'unsafe-inline'", "'unsafe-eval'", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("%s: CSP %q allows %s", what, csp, bad)
		}
	}
	for k, want := range map[string]string{
		"X-Content-Type-Options":     "nosniff",
		"X-Frame-Options":            "DENY",
		"Referrer-Policy":            "no-referrer",
		"Cross-Origin-Opener-Policy": "same-origin",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("%s: Access-Control-Allow-Origin %q on a same-origin request", what, h.Get("Access-Control-Allow-Origin"))
	}
}
