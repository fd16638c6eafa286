package notification_test

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	"github.com/guardyn/guardyn/services/notification"
	"github.com/guardyn/guardyn/services/notification/notificationtest"
)

// trust returns HTTP options that trust srv's certificate and may reach it on loopback.
func trust(srv *httptest.Server) notification.HTTPOptions {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return notification.HTTPOptions{TLS: &tls.Config{RootCAs: pool}, AllowPrivate: true}
}

func newWebPush(t testing.TB) (*notification.WebPush, *notificationtest.WebPushServer) {
	t.Helper()
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	srv := notificationtest.NewWebPushServer(t, vapid.PublicKey().Bytes())
	wp, err := notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: trust(srv.Server)})
	if err != nil {
		t.Fatal(err)
	}
	return wp, srv
}

// TestWebPushProtocol: the push the server receives carries a VAPID JWT it verifies and an
// aes128gcm payload it decrypts to the fixed wake-up, and nothing else; 404 and 410 mean
// the subscription is gone, 5xx and 429 are retried, other errors are not.
func TestWebPushProtocol(t *testing.T) {
	wp, srv := newWebPush(t)
	ctx := context.Background()
	if err := wp.Push(ctx, srv.Target("/push/a")); err != nil {
		t.Fatal(err)
	}
	if errs := srv.ProtocolErrors(); len(errs) > 0 {
		t.Fatalf("push service refused: %v", errs)
	}
	if got := srv.Payloads(); len(got) != 1 || got[0] != `{"wake":1}` {
		t.Fatalf("decrypted payloads %q", got)
	}
	for code, want := range map[int]string{410: "gone", 404: "gone", 500: "retry", 429: "retry", 413: "fail"} {
		srv.Answer("/push/b", code)
		err := wp.Push(ctx, srv.Target("/push/b"))
		if got := classify(err); got != want {
			t.Errorf("HTTP %d: %v classified %s, want %s", code, err, got, want)
		}
	}
}

func classify(err error) string {
	var pe *notification.PushError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, notification.ErrTargetGone):
		return "gone"
	case errors.As(err, &pe) && pe.Retryable:
		return "retry"
	}
	return "fail"
}

// TestWebPushRefusesPrivateAddresses: without AllowPrivate, the client does not even
// connect to a loopback endpoint, whatever registration let through, and never retries it.
func TestWebPushRefusesPrivateAddresses(t *testing.T) {
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	srv := notificationtest.NewWebPushServer(t, vapid.PublicKey().Bytes())
	opts := trust(srv.Server)
	opts.AllowPrivate = false
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: opts}))
	err := wp.Push(context.Background(), srv.Target("/push/a"))
	if err == nil || classify(err) != "fail" {
		t.Fatalf("push to loopback: %v (%s)", err, classify(err))
	}
	if srv.Hits("/push/a") != 0 {
		t.Fatal("the request reached the loopback server")
	}
}

// TestWebPushRefusesUnsendableEndpoint: an endpoint whose query holds bytes no HTTP/1.1
// request line carries (a space, non-ASCII) is refused before any connection, not sent
// as a malformed request. (Web Push writes its requests itself, not through
// http.Request.Write.)
func TestWebPushRefusesUnsendableEndpoint(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: trust(srv)}))
	ua := must(ecdh.P256().GenerateKey(rand.Reader))
	for _, endpoint := range []string{srv.URL + "/push/a?x y", srv.URL + "/push/a?\u00e9"} {
		target := &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
			Endpoint: endpoint, P256Dh: ua.PublicKey().Bytes(), Auth: make([]byte, 16),
		}}}
		err := wp.Push(context.Background(), target)
		if classify(err) != "fail" {
			t.Errorf("push to %q: %v (%s), want a permanent failure", endpoint, err, classify(err))
		}
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("%d connections to the push service, want none", n)
	}
}

func apnsTarget(token string) *notificationv1.RegisterPushTargetRequest {
	return &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_Apns{Apns: &notificationv1.ApnsTarget{
		DeviceToken: []byte(token), Topic: "dev.guardyn.app", Environment: notificationv1.ApnsEnvironment_APNS_ENVIRONMENT_SANDBOX,
	}}}
}

func newAPNs(t testing.TB) (*notification.APNs, *apnsServer) {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	srv := newAPNsServer(t, key)
	a, err := notification.NewAPNs(notification.APNsConfig{Key: key, KeyID: srv.keyID, TeamID: srv.team, Sandbox: srv.URL, Production: srv.URL + "/wrong", HTTP: trust(srv.Server)})
	if err != nil {
		t.Fatal(err)
	}
	return a, srv
}

// TestAPNsProtocol: pushes go over HTTP/2 with a provider JWT the server verifies, the
// background push headers, a collapse id and an empty aps; 410 means the token is gone.
func TestAPNsProtocol(t *testing.T) {
	a, srv := newAPNs(t)
	ctx := context.Background()
	for range 2 {
		if err := a.Push(ctx, apnsTarget("tok1")); err != nil {
			t.Fatal(err)
		}
	}
	if len(srv.errs) > 0 || len(srv.tokens) != 2 {
		t.Fatalf("server saw %d pushes, errors %v", len(srv.tokens), srv.errs)
	}
	if err := a.Push(ctx, apnsTarget("dead")); !errors.Is(err, notification.ErrTargetGone) {
		t.Fatalf("unregistered token: %v", err)
	}
}

func fcmTarget(token string) *notificationv1.RegisterPushTargetRequest {
	return &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_Fcm{Fcm: &notificationv1.FcmTarget{RegistrationToken: token}}}
}

// TestFCMProtocol: the provider trades a signed service-account JWT for an access token at
// the token endpoint once, sends data-only messages with it, and reads UNREGISTERED as gone.
func TestFCMProtocol(t *testing.T) {
	srv := newFCMServer(t)
	f, err := notification.NewFCM(notification.FCMConfig{ServiceAccountJSON: srv.serviceAccount(), Endpoint: srv.URL, HTTP: trust(srv.Server)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if err := f.Push(ctx, fcmTarget("fcm-token:1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Push(ctx, fcmTarget("gone")); !errors.Is(err, notification.ErrTargetGone) {
		t.Fatalf("unregistered token: %v", err)
	}
	if len(srv.errs) > 0 || len(srv.sent) != 3 || srv.issued != 1 {
		t.Fatalf("sent %d, tokens issued %d, errors %v", len(srv.sent), srv.issued, srv.errs)
	}
}
