package platform_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/client/grpcweb"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/auth"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// webEnv is a platform with its web port, and clients that reach it as a browser does.
type webEnv struct {
	*env
	base string // http://host:port of the web port
	// Over gRPC-Web and over the Connect protocol.
	webAuth, connectAuth authv1.AuthServiceClient
	webMsg, connectMsg   messagingv1.MessagingServiceClient
}

func startWeb(t *testing.T, tune func(*platform.Config)) *webEnv {
	t.Helper()
	e := startWith(t, func(c *platform.Config) {
		c.WebAddr = "127.0.0.1:0"
		tune(c)
	})
	base := "http://" + e.p.WebAddr().String()
	web, conn := grpcweb.New(nil, base, grpcweb.GRPCWeb), grpcweb.New(nil, base, grpcweb.Connect)
	return &webEnv{env: e, base: base,
		webAuth: authv1.NewAuthServiceClient(web), connectAuth: authv1.NewAuthServiceClient(conn),
		webMsg: messagingv1.NewMessagingServiceClient(web), connectMsg: messagingv1.NewMessagingServiceClient(conn)}
}

// sameFailure asserts that a call failed the same way natively and over the web.
func sameFailure(t *testing.T, what string, native, web error, code codes.Code, reason string) {
	t.Helper()
	for via, err := range map[string]error{"gRPC": native, "web": web} {
		if status.Code(err) != code || server.Reason(err) != reason {
			t.Errorf("%s over %s: got %v (reason %q), want %v/%q", what, via, err, server.Reason(err), code, reason)
		}
	}
}

// The web port is the same API with the same defences: a browser registers, logs in and
// calls as a device; a call without a valid token, a field over its limit and a message over
// the transport's limit are refused exactly as over gRPC.
func TestWebIsNoBypass(t *testing.T) {
	e := startWeb(t, func(*platform.Config) {})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, via := range map[string]struct {
		auth authv1.AuthServiceClient
		msg  messagingv1.MessagingServiceClient
	}{"gRPC-Web": {e.webAuth, e.webMsg}, "Connect": {e.connectAuth, e.connectMsg}} {
		t.Run(name, func(t *testing.T) {
			d, err := rawdevice.Register(ctx, via.auth, "web"+strings.ToLower(name[:1]))
			if err != nil {
				t.Fatalf("register over the web: %v", err)
			}
			devs, err := via.auth.ListDevices(d.Context(ctx), &authv1.ListDevicesRequest{})
			if err != nil || len(devs.GetDevices()) != 1 {
				t.Fatalf("list devices over the web: %v, %v", devs, err)
			}

			_, nerr := e.auth.ListDevices(ctx, &authv1.ListDevicesRequest{})
			_, werr := via.auth.ListDevices(ctx, &authv1.ListDevicesRequest{})
			sameFailure(t, "no token", nerr, werr, codes.Unauthenticated, "TOKEN_MISSING")

			forged := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.Repeat("A", 80))
			_, nerr = e.auth.ListDevices(forged, &authv1.ListDevicesRequest{})
			_, werr = via.auth.ListDevices(forged, &authv1.ListDevicesRequest{})
			sameFailure(t, "forged token", nerr, werr, codes.Unauthenticated, "TOKEN_INVALID")

			big := rawdevice.SendRequest(d.UserID, make([]byte, 256<<10+1), 9)
			_, nerr = e.msg.SendMessage(d.Context(ctx), big)
			_, werr = via.msg.SendMessage(d.Context(ctx), big)
			sameFailure(t, "envelope over its field limit", nerr, werr, codes.InvalidArgument, server.ReasonLimitExceeded)

			// Over the 5 MiB message limit of the transport: refused before any handler.
			huge := rawdevice.SendRequest(d.UserID, make([]byte, 6<<20), 9)
			_, nerr = e.msg.SendMessage(d.Context(ctx), huge)
			_, werr = via.msg.SendMessage(d.Context(ctx), huge)
			sameFailure(t, "message over the transport limit", nerr, werr, codes.ResourceExhausted, "")
			// Compressed to a few KiB, it is still refused once inflated past the limit.
			p := grpcweb.GRPCWeb
			if name == "Connect" {
				p = grpcweb.Connect
			}
			gz := messagingv1.NewMessagingServiceClient(grpcweb.New(nil, e.base, p, connect.WithSendGzip()))
			_, werr = gz.SendMessage(d.Context(ctx), huge)
			sameFailure(t, "compressed message over the transport limit", nerr, werr, codes.ResourceExhausted, "")
		})
	}
}

// Rate limits count a caller's calls whichever port they come through: the web port does
// not give a second budget.
func TestWebSharesRateLimits(t *testing.T) {
	e := startWeb(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["account"] = ratelimit.Config{Rate: 1.0 / 3600, Burst: 3, MaxKeys: 16}
	})
	d := e.register(t, "alice")
	ctx := d.ctx(t)
	for i := range 2 {
		if _, err := e.auth.ListDevices(ctx, &authv1.ListDevicesRequest{}); err != nil {
			t.Fatalf("native call %d: %v", i, err)
		}
	}
	if _, err := e.webAuth.ListDevices(ctx, &authv1.ListDevicesRequest{}); err != nil {
		t.Fatalf("web call within the budget: %v", err)
	}
	_, err := e.webAuth.ListDevices(ctx, &authv1.ListDevicesRequest{})
	wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")
}

// rawWeb sends one HTTP request to the web port.
func rawWeb(t *testing.T, method, url string, body []byte, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// Only listed origins may call the API from their pages, and never with credentials or a
// wildcard; a request from any other origin is refused before it reaches a service.
func TestWebCORS(t *testing.T) {
	const allowed = "https://app.example.org"
	e := startWeb(t, func(c *platform.Config) { c.WebOrigins = []string{allowed} })
	register := e.base + authv1.AuthService_Register_FullMethodName
	preflight := func(origin string) *http.Response {
		return rawWeb(t, http.MethodOptions, register, nil, map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "content-type,x-grpc-web,authorization",
		})
	}

	resp := preflight(allowed)
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != allowed ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(h.Get("Access-Control-Expose-Headers"), "Grpc-Status") ||
		h.Get("Access-Control-Allow-Credentials") != "" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
		t.Errorf("preflight from an allowed origin: %d %v", resp.StatusCode, h)
	}

	for _, origin := range []string{"https://evil.example", "null", "http://app.example.org", "https://app.example.org.evil.example"} {
		resp := preflight(origin)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: %d, Access-Control-Allow-Origin %q; want 403 without it", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}

	// A call from a page elsewhere (a non-browser client forging Origin gets no further)
	// changes nothing: the username stays free.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := must(rawdevice.Register(ctx, e.auth, "probe"))
	body := webFrame(t, registerRequest(t, "victim"))
	resp = rawWeb(t, http.MethodPost, register, body, map[string]string{
		"Origin": "https://evil.example", "Content-Type": "application/grpc-web+proto",
	})
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Grpc-Status") != "" {
		t.Errorf("call from another origin: %d, grpc-status %q; want 403 before the API", resp.StatusCode, resp.Header.Get("Grpc-Status"))
	}
	if _, err := e.auth.LookupIdentity(d.Context(ctx), &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: "victim"}}); status.Code(err) != codes.NotFound {
		t.Errorf("after the refused call, lookup of its username: %v, want NOT_FOUND", err)
	}
	// The very same request without the foreign Origin registers: it was refused for its origin.
	resp = rawWeb(t, http.MethodPost, register, body, map[string]string{"Content-Type": "application/grpc-web+proto"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the request without Origin: %d", resp.StatusCode)
	}
	if _, err := e.auth.LookupIdentity(d.Context(ctx), &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: "victim"}}); err != nil {
		t.Errorf("after the accepted call, lookup of its username: %v", err)
	}

	// The page's own origin needs no entry: a same-origin call with Origin set goes through.
	resp = rawWeb(t, http.MethodPost, e.base+authv1.AuthService_GetTrustRoot_FullMethodName,
		webFrame(t, &authv1.GetTrustRootRequest{}), map[string]string{
			"Origin": e.base, "Content-Type": "application/grpc-web+proto",
		})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("same-origin call: %d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("API response %s = %q, want %q", k, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("API response CSP %q lacks frame-ancestors 'none'", csp)
	}
}

// registerRequest is a valid registration of username with a fresh identity key.
func registerRequest(t *testing.T, username string) *authv1.RegisterRequest {
	t.Helper()
	id := must(keys.GenerateIdentity())
	ik := id.Public().Bytes()
	sig := must(id.Sign(keys.ContextRegistration, auth.RegistrationStatement(username, ik)))
	return &authv1.RegisterRequest{Username: username, IdentityKey: ik, DeviceName: "web", Signature: sig}
}

// webFrame encodes m as the one message of a gRPC-Web request body: a flag byte, a
// big-endian length, the message.
func webFrame(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b := must(proto.Marshal(m))
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// The web port refuses a wildcard or malformed origin list at startup.
func TestWebOriginsValidated(t *testing.T) {
	for _, origins := range [][]string{{"*"}, {"null"}, {"app.example.org"}, {"https://app.example.org/path"}, {"ftp://x"}} {
		_, err := platform.Start(context.Background(), platform.Config{
			DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", WebAddr: "127.0.0.1:0", WebOrigins: origins,
		})
		if err == nil || !strings.Contains(err.Error(), "web origin") {
			t.Errorf("origins %q: %v, want a web origin error", origins, err)
		}
	}
}

// The web port serves the app and the API on one origin, so the app needs no CORS.
func TestWebServesApp(t *testing.T) {
	e := startWeb(t, func(c *platform.Config) {
		c.WebApp = fstest.MapFS{"index.html": {Data: []byte("<!doctype html><title>Guardyn</title>")}}
	})
	resp := rawWeb(t, http.MethodGet, e.base+"/", nil, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		resp.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("GET /: %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := e.webAuth.GetTrustRoot(context.Background(), &authv1.GetTrustRootRequest{}); err != nil {
		t.Errorf("the API beside the app: %v", err)
	}
}
