package notification_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
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
