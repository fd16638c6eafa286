package web_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"

	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/tools/devserver/web"
)

// FuzzHandler sends arbitrary requests to the whole web handler (origin policy, the
// gRPC-Web and Connect translator, the app's files). Whatever comes, it answers without
// panicking, with the security headers, never opens CORS to an origin not listed, and
// never serves a file outside the app or a hidden one.
func FuzzHandler(f *testing.F) {
	const allowed = "https://app.example.org"
	g := grpc.NewServer()
	presencev1.RegisterPresenceServiceServer(g, presencev1.UnimplementedPresenceServiceServer{})
	h, err := web.NewHandler(g, web.Config{App: app, Origins: []string{allowed}, MaxMessageBytes: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("GET", "/", "", "", "br", []byte(nil))
	f.Add("GET", "/app.3f9a2c1d.js", "", "", "gzip;q=0, br", []byte(nil))
	f.Add("POST", "/guardyn.presence.v1.PresenceService/GetLastSeen", allowed, "application/grpc-web+proto", "", []byte{0, 0, 0, 0, 0})
	f.Add("POST", "/guardyn.presence.v1.PresenceService/GetLastSeen", "https://evil.example", "application/proto", "", []byte{})
	f.Add("POST", "/guardyn.presence.v1.PresenceService/WatchPresence", "", "application/connect+proto", "", []byte{0, 0, 0, 0, 2, 10, 0})
	f.Add("OPTIONS", "/guardyn.presence.v1.PresenceService/GetLastSeen", allowed, "", "", []byte(nil))
	f.Add("GET", "/.env", "", "", "", []byte(nil))
	f.Add("GET", "/guardyn.presence.v1.PresenceService/GetLastSeen?encoding=proto&message=CgA&connect=v1", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, target, origin, contentType, acceptEncoding string, body []byte) {
		req, err := http.NewRequest(method, "http://web.test"+target, bytes.NewReader(body))
		if err != nil || !strings.HasPrefix(req.URL.Path, "/") {
			return
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Accept-Encoding", acceptEncoding)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		hdr := rec.Result().Header
		if hdr.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(hdr.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Fatalf("%s %s: security headers missing: %v", method, target, hdr)
		}
		if acao := hdr.Get("Access-Control-Allow-Origin"); acao != "" && !strings.EqualFold(acao, allowed) {
			t.Fatalf("%s %s from %q: Access-Control-Allow-Origin %q", method, target, origin, acao)
		}
		if hdr.Get("Access-Control-Allow-Credentials") != "" {
			t.Fatalf("%s %s: credentials allowed", method, target)
		}
		if bytes.Contains(rec.Body.Bytes(), []byte("SECRET")) || bytes.Contains(rec.Body.Bytes(), []byte("hidden")) {
			t.Fatalf("%s %s: served a hidden file", method, target)
		}
	})
}
