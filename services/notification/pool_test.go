package notification_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	"github.com/guardyn/guardyn/services/notification"
)

// TestWebPushSpreadsPushesOverConnections: concurrent Web Pushes to one push service go
// out on connections of their own, even when the service offers HTTP/2. Multiplexed on one
// HTTP/2 connection they were serialized by its single reader and writer, which held a
// 2-core machine to about 4,000 pushes/s with CPU to spare (docs/perf-presence.md).
func TestWebPushSpreadsPushesOverConnections(t *testing.T) {
	const concurrent = 8
	var (
		mu      sync.Mutex
		remotes = map[string]bool{}
		arrived = make(chan struct{}, concurrent)
		all     = make(chan struct{})
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		remotes[r.RemoteAddr] = true
		mu.Unlock()
		arrived <- struct{}{}
		// Hold every push until all are in flight, so none can reuse another's connection.
		select {
		case <-all:
		case <-time.After(10 * time.Second):
		}
		w.WriteHeader(http.StatusCreated)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: trust(srv)}))
	ua := must(ecdh.P256().GenerateKey(rand.Reader))
	target := &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: srv.URL + "/push/x", P256Dh: ua.PublicKey().Bytes(), Auth: make([]byte, 16),
	}}}
	errs := make(chan error, concurrent)
	for range concurrent {
		go func() { errs <- wp.Push(context.Background(), target) }()
	}
	for range concurrent {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("the pushes did not all reach the push service")
		}
	}
	close(all)
	for range concurrent {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(remotes) != concurrent {
		t.Fatalf("%d concurrent pushes came over %d connections; want one each", concurrent, len(remotes))
	}
}

// TestWebPushNoGoroutinesPerConnection: a push runs in its caller's goroutine, and an
// idle connection costs no goroutine. net/http's Transport kept a reader and a writer
// goroutine per connection and passed each push between them and the caller, which cost
// about 60 µs of CPU per push (docs/perf-presence.md).
func TestWebPushNoGoroutinesPerConnection(t *testing.T) {
	const concurrent = 8
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	srv := startPushServerProcess(t, vapid.PublicKey().Bytes()) // its goroutines are not ours
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test",
		HTTP: notification.HTTPOptions{TLS: srv.tls, AllowPrivate: true}}))
	before := runtime.NumGoroutine()
	errs := make(chan error, concurrent)
	for range concurrent {
		go func() { errs <- wp.Push(context.Background(), srv.target) }()
	}
	for range concurrent {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Goroutines that are ending may take a moment to go; ones per connection stay.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("after %d concurrent pushes, %d goroutines remain beyond the %d before", concurrent, n-before, before)
	}
	if bye, _ := srv.stop(t); bye.Accepted != concurrent || bye.Errors != 0 {
		t.Fatalf("the push service accepted %d of %d and refused %d", bye.Accepted, concurrent, bye.Errors)
	}
}

// TestWebPushConnectionReuse: a pooled connection the push service has closed is not a
// failed push (the push goes again on a new connection), and a connection whose answer
// was too long to drain is not reused.
func TestWebPushConnectionReuse(t *testing.T) {
	var conns atomic.Int64
	var long atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		if long.Load() {
			w.Write(make([]byte, 64<<10))
		}
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
	target := &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: srv.URL + "/push/x", P256Dh: ua.PublicKey().Bytes(), Auth: make([]byte, 16),
	}}}
	push := func(want int64) {
		t.Helper()
		if err := wp.Push(context.Background(), target); err != nil {
			t.Fatal(err)
		}
		if n := conns.Load(); n != want {
			t.Fatalf("%d connections so far, want %d", n, want)
		}
	}
	push(1)
	push(1) // reused
	srv.CloseClientConnections()
	push(2) // the pooled one was closed: sent again on a new one
	long.Store(true)
	push(2)
	long.Store(false)
	push(3) // the long answer's connection was not drained nor reused
	push(3)
}

// TestWebPushTimeout: a push service that does not answer fails the push within
// HTTPOptions.Timeout, as a retryable network error.
func TestWebPushTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	srv.StartTLS()
	t.Cleanup(func() { close(release); srv.Close() })
	opts := trust(srv)
	opts.Timeout = 200 * time.Millisecond
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: opts}))
	ua := must(ecdh.P256().GenerateKey(rand.Reader))
	target := &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: srv.URL + "/push/x", P256Dh: ua.PublicKey().Bytes(), Auth: make([]byte, 16),
	}}}
	start := time.Now()
	err := wp.Push(context.Background(), target)
	if classify(err) != "retry" {
		t.Fatalf("push to a silent service: %v (%s), want a retryable error", err, classify(err))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the push took %v with a 200ms timeout", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	opts.Timeout = time.Minute
	wp = must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: opts}))
	start = time.Now()
	if err := wp.Push(ctx, target); err == nil || time.Since(start) > 30*time.Second {
		t.Fatalf("a cancelled push returned %v after %v", err, time.Since(start))
	}
}

// TestWebPushFollowsNoRedirect: a push service's redirect is an answer, never followed:
// following one would let an endpoint send the server's requests anywhere (SSRF).
func TestWebPushFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(other.Close)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/internal", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: trust(srv)}))
	ua := must(ecdh.P256().GenerateKey(rand.Reader))
	target := &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: srv.URL + "/push/x", P256Dh: ua.PublicKey().Bytes(), Auth: make([]byte, 16),
	}}}
	err := wp.Push(context.Background(), target)
	var pe *notification.PushError
	if !errors.As(err, &pe) || pe.Status != http.StatusTemporaryRedirect || pe.Retryable {
		t.Fatalf("push answered by a redirect: %v, want a final HTTP 307 failure", err)
	}
	if elsewhere.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}
