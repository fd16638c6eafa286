package embedded_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded"
)

// backlogInboxes is how many offline devices BenchmarkBacklogRSS spreads its messages over.
const backlogInboxes = 100_000

// BenchmarkBacklogRSS stores GUARDYN_BENCH_BACKLOG messages (default 1 M) of 200 B over
// 100 k inboxes, as offline devices accumulate them, reopens the store and reports the
// process's resident memory after the fill and after the reopen, and the peak: the memory
// the store needs for a backlog. Run it alone (-run '^$' -bench BacklogRSS -benchtime 1x):
// resident memory is the whole process's.
func BenchmarkBacklogRSS(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("GUARDYN_BENCH_BACKLOG"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("GUARDYN_BENCH_BACKLOG: %v", err)
		}
	}
	for range b.N {
		dir := b.TempDir()
		s, err := embedded.Open(dir, embedded.Options{})
		if err != nil {
			b.Fatal(err)
		}
		body := make([]byte, 200)
		now := time.Now()
		const batch = 1000
		start := time.Now()
		for done := 0; done < n; done += batch {
			msgs := make([]msgstore.Message, 0, batch)
			for i := done; i < min(done+batch, n); i++ {
				var id msgstore.ID
				binary.BigEndian.PutUint64(id[:], uint64(i))
				binary.BigEndian.PutUint64(id[8:], uint64(i)*0x9e3779b97f4a7c15)
				in := msgstore.Inbox{UserID: fmt.Sprintf("user-%06d", i%backlogInboxes), DeviceID: "device-1"}
				msgs = append(msgs, msgstore.Message{Inbox: in, ID: id, Kind: 1, Body: body, Timestamp: now, Expiry: now.Add(30 * 24 * time.Hour)})
			}
			if err := s.Append(context.Background(), msgs); err != nil {
				b.Fatal(err)
			}
		}
		fill := time.Since(start)
		runtime.GC()
		b.ReportMetric(rssMB(b, "VmRSS"), "MB-rss-filled")
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if s, err = embedded.Open(dir, embedded.Options{}); err != nil {
			b.Fatal(err)
		}
		reopen := time.Since(start)
		in := msgstore.Inbox{UserID: "user-000007", DeviceID: "device-1"}
		want := n / backlogInboxes
		if n%backlogInboxes > 7 {
			want++
		}
		if c, err := s.Count(context.Background(), in); err != nil || c != want {
			b.Fatalf("Count after reopen = %d, %v; want %d", c, err, want)
		}
		runtime.GC()
		b.ReportMetric(rssMB(b, "VmRSS"), "MB-rss-reopened")
		b.ReportMetric(rssMB(b, "VmHWM"), "MB-rss-peak")
		b.ReportMetric(float64(n)/fill.Seconds(), "msg/s-fill")
		b.ReportMetric(reopen.Seconds(), "s-reopen")
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// rssMB reads a memory figure of this process from /proc/self/status, in MB.
func rssMB(tb testing.TB, field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				tb.Fatalf("%s: %v", field, err)
			}
			return float64(kb) / 1024
		}
	}
	tb.Fatalf("%s not in /proc/self/status", field)
	return 0
}
