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
		start := time.Now()
		fillBacklog(b, s, n, backlogInboxes)
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

// The index's memory per stored message, in bytes: its entries in the arena, outside
// the Go heap, and what it keeps on the heap (the inboxes' map and headers). The heap
// part costs up to twice its size in resident memory, since with the default GOGC=100
// the heap grows to twice the live heap between collections; the arena costs what it
// holds. At 10 M stored messages the budgets give at most 10 M × (32 + 2 × 6) B =
// 440 MB, which leaves the rest of the server room under 512 MB (docs/storage.md).
const (
	arenaPerMessageBudget = 32
	heapPerMessageBudget  = 6
	rssBound              = 512e6
	backlogTarget         = 10e6
)

// TestIndexHeapPerMessage stores 200 k messages, 100 per inbox as offline devices
// accumulate them, and checks the memory the index holds per message in the arena and
// on the heap, after the appends and after a reopen, which replays the log; and that
// resident memory extrapolated to 10 M stored messages stays under 512 MB.
func TestIndexHeapPerMessage(t *testing.T) {
	const n, perInbox = 200_000, 100
	if testing.Short() {
		t.Skip("stores 200 k messages")
	}
	dir := t.TempDir()
	check := func(when string, s *embedded.Store, heap float64) {
		t.Helper()
		arena := float64(embedded.IndexArenaBytes(s)) / n
		rss := backlogTarget * (arena + 2*max(heap, 0))
		t.Logf("index per message %s: %.1f B in the arena, %.1f B of heap; at 10 M: %.0f MB resident",
			when, arena, heap, rss/1e6)
		if arena > arenaPerMessageBudget || heap > heapPerMessageBudget {
			t.Errorf("index per message %s: %.1f B in the arena, %.1f B of heap; want at most %d B and %d B",
				when, arena, heap, arenaPerMessageBudget, heapPerMessageBudget)
		}
		if rss >= rssBound {
			t.Errorf("index at 10 M messages %s: %.0f MB resident; want under %.0f MB", when, rss/1e6, rssBound/1e6)
		}
	}
	base := heapInUse()
	s, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fillBacklog(t, s, n, n/perInbox)
	check("after appends", s, float64(heapInUse()-base)/n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	base = heapInUse()
	if s, err = embedded.Open(dir, embedded.Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("after reopen", s, float64(heapInUse()-base)/n)
	if c, err := s.Count(context.Background(), msgstore.Inbox{UserID: "user-000007", DeviceID: "device-1"}); err != nil || c != perInbox {
		t.Fatalf("Count after reopen = %d, %v; want %d", c, err, perInbox)
	}
}

// heapInUse returns the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// fillBacklog appends n messages of 200 B spread round-robin over inboxes.
func fillBacklog(tb testing.TB, s msgstore.Store, n, inboxes int) {
	body := make([]byte, 200)
	now := time.Now()
	const batch = 1000
	msgs := make([]msgstore.Message, 0, batch)
	for done := 0; done < n; done += batch {
		msgs = msgs[:0]
		for i := done; i < min(done+batch, n); i++ {
			var id msgstore.ID
			binary.BigEndian.PutUint64(id[:], uint64(i))
			binary.BigEndian.PutUint64(id[8:], uint64(i)*0x9e3779b97f4a7c15)
			in := msgstore.Inbox{UserID: fmt.Sprintf("user-%06d", i%inboxes), DeviceID: "device-1"}
			msgs = append(msgs, msgstore.Message{Inbox: in, ID: id, Kind: 1, Body: body, Timestamp: now, Expiry: now.Add(30 * 24 * time.Hour)})
		}
		if err := s.Append(context.Background(), msgs); err != nil {
			tb.Fatal(err)
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
