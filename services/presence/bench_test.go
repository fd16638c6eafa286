package presence_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// fanOut opens n watches of bob, from n accounts over 16 connections, and returns a function
// that changes bob's status (to each of statuses in turn) and returns how long each watch
// took to see it.
func fanOut(tb testing.TB, e *env, n int, statuses ...presencev1.PresenceStatus) func() []time.Duration {
	tb.Helper()
	e.everyone(tb, "bob")
	conns := make([]presencev1.PresenceServiceClient, 16)
	for i := range conns {
		c, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		conns[i] = presencev1.NewPresenceServiceClient(c)
	}
	type seen struct {
		status presencev1.PresenceStatus
		at     time.Time
	}
	events := make(chan seen, 4*n)
	var wg sync.WaitGroup
	for i := range n {
		viewer := fmt.Sprintf("viewer%04d", i)
		c := conns[i%len(conns)]
		if _, err := c.SetPresencePrivacy(e.as(tb, viewer, 1), &presencev1.SetPresencePrivacyRequest{Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE}); err != nil {
			tb.Fatal(err)
		}
		s, err := c.WatchPresence(e.as(tb, viewer, 1), &presencev1.WatchPresenceRequest{UserIds: []string{"bob"}})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := s.Recv(); err != nil { // the initial state
			tb.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := s.Recv()
				if err != nil {
					return
				}
				events <- seen{r.GetPresence().GetStatus(), time.Now()}
			}
		}()
	}
	if len(statuses) == 0 {
		statuses = []presencev1.PresenceStatus{presencev1.PresenceStatus_PRESENCE_STATUS_BUSY, presencev1.PresenceStatus_PRESENCE_STATUS_AWAY}
	}
	round := 0
	bob := e.as(tb, "bob", 1)
	return func() []time.Duration {
		st := statuses[round%len(statuses)]
		round++
		began := time.Now()
		if _, err := e.client.SetStatus(bob, &presencev1.SetStatusRequest{Status: st}); err != nil {
			tb.Fatal(err)
		}
		lat := make([]time.Duration, 0, n)
		timeout := time.After(30 * time.Second)
		for len(lat) < n {
			select {
			case ev := <-events:
				if ev.status == st {
					lat = append(lat, ev.at.Sub(began))
				}
			case <-timeout:
				tb.Fatalf("%d of %d watches saw the change", len(lat), n)
			}
		}
		return lat
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkFanOut1000 changes one account's status under 1,000 watches and reports the p50
// and p99 of the time until each watch has it, against the baseline in the same run: the
// time from a put to the presence bucket until a raw KV watch of it fires.
func BenchmarkFanOut1000(b *testing.B) {
	benchFanOut(b)
}

// BenchmarkFanOut1000Offline is BenchmarkFanOut1000 with bob going offline and back: every
// other change sends a last seen.
func BenchmarkFanOut1000Offline(b *testing.B) {
	benchFanOut(b, presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE, presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE)
}

func benchFanOut(b *testing.B, statuses ...presencev1.PresenceStatus) {
	e := start(b, options{})
	change := fanOut(b, e, 1000, statuses...)
	var all []time.Duration
	b.ResetTimer()
	cpu := processCPU(b)
	for b.Loop() {
		all = append(all, change()...)
	}
	cpu = processCPU(b) - cpu
	b.StopTimer()
	// CPU of the whole process (server and the 1,000 clients) per watch and change: less
	// at the mercy of other load on a shared machine than the latencies.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*1000), "cpu-us/watch")
	b.ReportMetric(float64(percentile(all, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
	base := kvWatchLatency(b, e, 50)
	b.ReportMetric(float64(percentile(base, 0.5).Microseconds())/1000, "kv-watch-p50-ms")
	b.ReportMetric(float64(percentile(base, 0.99).Microseconds())/1000, "kv-watch-p99-ms")
}

// processCPU is the user and system time this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// kvWatchLatency is the baseline: put → KV watch update, n times.
func kvWatchLatency(tb testing.TB, e *env, n int) []time.Duration {
	ctx := context.Background()
	bucket, err := e.bus.PresenceBucket(ctx, 0)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := bucket.Watch(ctx, "baseline.1")
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			break
		}
	}
	var out []time.Duration
	for range n {
		began := time.Now()
		if _, err := bucket.Put(ctx, "baseline.1", []byte("x")); err != nil {
			tb.Fatal(err)
		}
		<-w.Updates()
		out = append(out, time.Since(began))
	}
	return out
}

// TestFanOutLatency is the short form of BenchmarkFanOut1000 that CI runs: 200 watches see
// each of 3 changes, p99 within a second (the benchmark's target is 100 ms at 1,000; a CI
// machine under load gets room).
func TestFanOutLatency(t *testing.T) {
	e := start(t, options{})
	change := fanOut(t, e, 200)
	var all []time.Duration
	for range 3 {
		all = append(all, change()...)
	}
	p99 := percentile(all, 0.99)
	t.Logf("200 watches: p50 %v, p99 %v", percentile(all, 0.5), p99)
	if p99 > time.Second {
		t.Fatalf("p99 %v", p99)
	}
}

// onlineDevices reports n devices online through Receive stream reports, as messaging
// instances do, and waits until the view holds them.
func onlineDevices(tb testing.TB, e *env, n int) {
	tb.Helper()
	for i := 0; i < n; i += 1000 {
		var open []*commonv1.DeviceAddress
		for j := i; j < min(n, i+1000); j++ {
			open = append(open, &commonv1.DeviceAddress{UserId: fmt.Sprintf("u%06d", j), DeviceId: 1})
		}
		data, err := proto.Marshal(&eventsv1.ReceiveStreams{Open: open})
		if err != nil {
			tb.Fatal(err)
		}
		if err := e.bus.Conn().Publish(bus.SubjectReceiveStreams, data); err != nil {
			tb.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for e.svc.Online() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d devices online", e.svc.Online(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// memoryPerDevice is what n online devices add to the process (presence view and the
// embedded NATS server's bucket), per device.
func memoryPerDevice(tb testing.TB, n int) float64 {
	e := start(tb, options{})
	onlineDevices(tb, e, 100) // warm: the bucket's stream and the view exist
	before := heap()
	onlineDevices(tb, e, 100+n)
	after := heap()
	return float64(after-before) / float64(n)
}

// BenchmarkMemoryPerOnlineDevice reports the heap 10,000 online devices cost, per device;
// target 2 KiB.
func BenchmarkMemoryPerOnlineDevice(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(memoryPerDevice(b, 10000), "B/device")
	}
}

// TestMemoryPerOnlineDevice is its short form: 2,000 devices, at most 2 KiB each.
func TestMemoryPerOnlineDevice(t *testing.T) {
	per := memoryPerDevice(t, 2000)
	t.Logf("%.0f bytes per online device", per)
	if per > 2048 {
		t.Fatalf("%.0f bytes per online device, budget 2048", per)
	}
}
