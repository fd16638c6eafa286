package notification_test

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	"github.com/guardyn/guardyn/services/notification"
	"github.com/guardyn/guardyn/services/notification/notificationtest"
)

// pushServerEnv, set to a hex VAPID public key, makes the test binary a push service
// process (notificationtest's, decrypting and verifying every push) instead of running
// tests: BenchmarkWebPushDecrypted runs the receiving side there, so that its CPU is
// measured apart from the sender's.
const pushServerEnv = "GUARDYN_TEST_PUSH_SERVER_VAPID"

// pushServerProfileEnv, set to a file name, makes the push service process write a CPU
// profile of its whole run there (go tool pprof): the benchmark's -test.cpuprofile covers
// only the sender.
const pushServerProfileEnv = "GUARDYN_TEST_PUSH_SERVER_CPUPROFILE"

// pushServerHello is what the push service process prints when it listens.
type pushServerHello struct {
	URL      string
	Cert     []byte // the server's TLS certificate, DER
	UA, Auth []byte // the subscription
}

// pushServerBye is what it prints when its stdin closes: pushes accepted and refused.
type pushServerBye struct {
	Accepted, Errors int
}

func TestMain(m *testing.M) {
	if v := os.Getenv(pushServerEnv); v != "" {
		os.Exit(runPushServer(v))
	}
	os.Exit(m.Run())
}

func runPushServer(vapidHex string) int {
	vapid, err := hex.DecodeString(vapidHex)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := notificationtest.StartWebPushServer(vapid)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Close()
	if path := os.Getenv(pushServerProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	out := json.NewEncoder(os.Stdout)
	out.Encode(pushServerHello{URL: srv.URL, Cert: srv.Certificate().Raw, UA: srv.UA.PublicKey().Bytes(), Auth: srv.Auth})
	io.Copy(io.Discard, os.Stdin) // until the benchmark is done
	out.Encode(pushServerBye{Accepted: len(srv.Payloads()), Errors: len(srv.ProtocolErrors())})
	return 0
}

// pushServerProcess is a push service in a child process.
type pushServerProcess struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	out    *json.Decoder
	hello  pushServerHello
	target *notificationv1.RegisterPushTargetRequest
	tls    *tls.Config
}

func startPushServerProcess(tb testing.TB, vapid []byte) *pushServerProcess {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), pushServerEnv+"="+hex.EncodeToString(vapid))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &pushServerProcess{cmd: cmd, stdin: stdin, out: json.NewDecoder(bufio.NewReader(stdout))}
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	if err := p.out.Decode(&p.hello); err != nil {
		tb.Fatalf("push service process: %v", err)
	}
	cert, err := x509.ParseCertificate(p.hello.Cert)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	p.tls = &tls.Config{RootCAs: pool}
	p.target = &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: p.hello.URL + "/push/x", P256Dh: p.hello.UA, Auth: p.hello.Auth,
	}}}
	return p
}

// stop ends the process and returns what it accepted and its CPU time.
func (p *pushServerProcess) stop(tb testing.TB) (pushServerBye, time.Duration) {
	tb.Helper()
	p.stdin.Close()
	var bye pushServerBye
	if err := p.out.Decode(&bye); err != nil {
		tb.Fatalf("push service process: %v", err)
	}
	if err := p.cmd.Wait(); err != nil {
		tb.Fatal(err)
	}
	ru := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return bye, time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWebPushDecrypted sends content-free Web Pushes from 64 goroutines to
// notificationtest's push service running in a process of its own, which verifies the
// VAPID JWT and decrypts every push (RFC 8291) as a browser would. It reports pushes/s in
// wall time and the CPU per push of each side: the sender's (this process) and the push
// service's (the child), both sharing the machine's cores.
func BenchmarkWebPushDecrypted(b *testing.B) {
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	srv := startPushServerProcess(b, vapid.PublicKey().Bytes())
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test",
		HTTP: notification.HTTPOptions{TLS: srv.tls, AllowPrivate: true}}))
	ctx := context.Background()
	// Warm up: the 64 senders' connections and TLS handshakes are made once, as in a
	// running service, not per measured push.
	const senders = 64
	warm := make(chan error, senders)
	for range senders {
		go func() { warm <- wp.Push(ctx, srv.target) }()
	}
	for range senders {
		if err := <-warm; err != nil {
			b.Fatal(err)
		}
	}
	var failed atomic.Int64
	b.SetParallelism(senders / runtime.GOMAXPROCS(0))
	cpu0, t0 := cpuTime(), time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := wp.Push(ctx, srv.target); err != nil {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	bye, serverCPU := srv.stop(b)
	if failed.Load() > 0 || bye.Errors > 0 || bye.Accepted != b.N+senders {
		b.Fatalf("%d pushes: %d failed, the push service accepted %d and refused %d", b.N+senders, failed.Load(), bye.Accepted, bye.Errors)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pushes/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "sender-cpu-µs/push")
	// The push service's CPU includes its start and the warm-up's handshakes.
	b.ReportMetric(float64(serverCPU.Microseconds())/float64(b.N+senders), "server-cpu-µs/push")
}

// TestWebPushDecryptedThroughput is BenchmarkWebPushDecrypted's short form for CI: the
// push service process decrypts and verifies every push of a run of 200.
func TestWebPushDecryptedThroughput(t *testing.T) {
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	srv := startPushServerProcess(t, vapid.PublicKey().Bytes())
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test",
		HTTP: notification.HTTPOptions{TLS: srv.tls, AllowPrivate: true}}))
	work := make(chan struct{}, 200)
	for range 200 {
		work <- struct{}{}
	}
	close(work)
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			var err error
			for range work {
				if err = wp.Push(context.Background(), srv.target); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	bye, cpu := srv.stop(t)
	t.Logf("push service: %d accepted, %v CPU", bye.Accepted, cpu)
	if bye.Accepted != 200 || bye.Errors != 0 {
		t.Fatalf("the push service accepted %d of 200 and refused %d", bye.Accepted, bye.Errors)
	}
}

// TestWebPushSenderAllocations bounds the sender's heap allocations per push, counted in
// this process while the push service runs in its own: a push is built in one buffer from
// header lines kept with the origin's VAPID JWT, written in one TLS record, and bounded by
// a deadline on its connection (no http.Request, header map, transfer writer or timer per
// push). Most of what is left is the RFC 8291 cryptography's (keys, HKDF's HMACs, AES-GCM).
// The sender made 93 allocations a push through http.Request.Write; it makes about 70.
func TestWebPushSenderAllocations(t *testing.T) {
	vapid := must(ecdh.P256().GenerateKey(rand.Reader))
	srv := startPushServerProcess(t, vapid.PublicKey().Bytes())
	wp := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test",
		HTTP: notification.HTTPOptions{TLS: srv.tls, AllowPrivate: true}}))
	ctx := context.Background()
	var err error
	push := func() {
		if e := wp.Push(ctx, srv.target); e != nil && err == nil {
			err = e
		}
	}
	push() // the connection and the origin's JWT
	allocs := testing.AllocsPerRun(20, push)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%.0f allocations per push", allocs)
	if allocs > maxSenderAllocs {
		t.Fatalf("%.0f allocations per push, want at most %d", allocs, maxSenderAllocs)
	}
	if bye, _ := srv.stop(t); bye.Accepted != 22 || bye.Errors != 0 {
		t.Fatalf("the push service accepted %d of 22 and refused %d", bye.Accepted, bye.Errors)
	}
}

// maxSenderAllocs leaves room for a few more allocations in a later Go's cryptography.
const maxSenderAllocs = 80
