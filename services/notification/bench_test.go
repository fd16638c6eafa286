package notification_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	"github.com/guardyn/guardyn/services/notification"
)

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// acceptAll is a push service that takes every push without decrypting it, so that the
// benchmark measures the sender, not the receiver sharing its cores.
func acceptAll(tb testing.TB) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return srv, &n
}

// BenchmarkWebPushSend sends content-free Web Pushes (RFC 8291 encryption, a VAPID JWT
// each) to a local push service (it offers HTTP/2; Web Push takes a connection per push
// in flight) from 64 goroutines; it reports pushes/s and the sender's CPU per push. BenchmarkRFC8291Primitives, in the same run, is the floor: one
// ephemeral P-256 key, one ECDH, the HKDF steps and one AES-128-GCM seal.
func BenchmarkWebPushSend(b *testing.B) {
	srv, accepted := acceptAll(b)
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: trust(srv)}))
	ua := must(ecdh.P256().GenerateKey(rand.Reader))
	auth := make([]byte, 16)
	target := &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: srv.URL + "/push/x", P256Dh: ua.PublicKey().Bytes(), Auth: auth,
	}}}
	ctx := context.Background()
	if err := wp.Push(ctx, target); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(32) // 32 × GOMAXPROCS senders
	cpu0, t0 := cpuTime(), time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := wp.Push(ctx, target); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pushes/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/push")
	_ = accepted
}

func BenchmarkRFC8291Primitives(b *testing.B) {
	ua := must(ecdh.P256().GenerateKey(rand.Reader))
	auth, salt := make([]byte, 16), make([]byte, 16)
	payload := make([]byte, 100)
	cpu0 := cpuTime()
	for b.Loop() {
		as, _ := ecdh.P256().GenerateKey(rand.Reader)
		secret, _ := as.ECDH(ua.PublicKey())
		prkKey, _ := hkdf.Extract(sha256.New, secret, auth)
		info := append(append([]byte("WebPush: info\x00"), ua.PublicKey().Bytes()...), as.PublicKey().Bytes()...)
		ikm, _ := hkdf.Expand(sha256.New, prkKey, string(info), 32)
		prk, _ := hkdf.Extract(sha256.New, ikm, salt)
		cek, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
		nonce, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
		block, _ := aes.NewCipher(cek)
		gcm, _ := cipher.NewGCM(block)
		gcm.Seal(nil, nonce, payload, nil)
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/push")
}

// TestWebPushThroughput is the short form of BenchmarkWebPushSend that CI runs: a second
// of pushes from 64 goroutines must reach a rate well clear of zero and every push must be
// accepted. (The figure that matters comes from the benchmark: docs/perf-presence.md.)
func TestWebPushThroughput(t *testing.T) {
	srv, accepted := acceptAll(t)
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test", HTTP: trust(srv)}))
	ua := must(ecdh.P256().GenerateKey(rand.Reader))
	target := &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: srv.URL + "/push/x", P256Dh: ua.PublicKey().Bytes(), Auth: make([]byte, 16),
	}}}
	// Warm up: the 64 senders' connections and TLS handshakes are made before the second
	// starts, as in a running service (each push in flight has a connection of its own).
	warm := make(chan error, 64)
	for range 64 {
		go func() { warm <- wp.Push(context.Background(), target) }()
	}
	for range 64 {
		if err := <-warm; err != nil {
			t.Fatal(err)
		}
	}
	accepted.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var sent, failed atomic.Int64
	done := make(chan struct{})
	for range 64 {
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				if err := wp.Push(context.Background(), target); err != nil {
					failed.Add(1)
					return
				}
				sent.Add(1)
			}
		}()
	}
	for range 64 {
		<-done
	}
	t.Logf("%d pushes in 1 s", sent.Load())
	if failed.Load() > 0 || sent.Load() < 100 || accepted.Load() != sent.Load() {
		t.Fatalf("sent %d, failed %d, accepted %d", sent.Load(), failed.Load(), accepted.Load())
	}
}
