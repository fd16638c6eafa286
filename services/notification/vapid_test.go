package notification

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// TestVAPIDTokenReuse: pushes to one push service origin share one signed VAPID JWT
// (signing ES256 per push cost 30% of a push's CPU, docs/perf-presence.md) until it is
// vapidReuse from expiry; then a new one is signed, valid vapidLifetime, within RFC 8292's
// 24 hours. Each JWT carries the origin as its audience.
func TestVAPIDTokenReuse(t *testing.T) {
	var (
		mu    sync.Mutex
		heads []string
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		heads = append(heads, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	vapid, _ := ecdh.P256().GenerateKey(rand.Reader)
	wp, err := NewWebPush(WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: HTTPOptions{TLS: &tls.Config{RootCAs: pool}, AllowPrivate: true}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clock := start
	wp.now = func() time.Time { return clock }
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	target := &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: srv.URL + "/push/x", P256Dh: ua.PublicKey().Bytes(), Auth: make([]byte, 16),
	}}}
	push := func(at time.Duration) (token string, exp time.Time) {
		t.Helper()
		clock = start.Add(at)
		if err := wp.Push(context.Background(), target); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		h := heads[len(heads)-1]
		mu.Unlock()
		tok, _, _ := strings.Cut(strings.TrimPrefix(h, "vapid t="), ",")
		claims := jwt.MapClaims{}
		if _, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return vapidPublic(t, vapid), nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(srv.URL), jwt.WithTimeFunc(func() time.Time { return clock })); err != nil {
			t.Fatalf("push at +%v: %v", at, err)
		}
		e, _ := claims.GetExpirationTime()
		return tok, e.Time
	}
	first, exp := push(0)
	if life := exp.Sub(start); life < vapidLifetime-time.Second || life > 24*time.Hour {
		t.Fatalf("JWT valid for %v, want %v (at most 24h)", life, vapidLifetime)
	}
	if again, _ := push(vapidLifetime - vapidReuse - time.Minute); again != first {
		t.Fatal("a push within the JWT's reuse window signed a new JWT")
	}
	renewed, exp2 := push(vapidLifetime - vapidReuse + time.Minute)
	if renewed == first || !exp2.After(exp) {
		t.Fatal("a push past the JWT's reuse window did not get a new JWT")
	}
}

func vapidPublic(t *testing.T, k *ecdh.PrivateKey) any {
	der, err := x509.MarshalPKIXPublicKey(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
