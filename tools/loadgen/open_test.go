package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenLoopDeliversEverything runs a short open-loop sweep against a real devserver
// process, with the mix of group messages and receipts and the server's profiles: every
// stored message must arrive exactly once, the achieved rate must follow the offered one,
// and the curve and the profiles must be written. The figures of docs/perf-throughput.md
// come from the same code at 10,000 devices.
func TestOpenLoopDeliversEverything(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "devserver")
	build := exec.Command("go", "build", "-o", bin, "github.com/guardyn/guardyn/tools/devserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build devserver: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prof := t.TempDir()
	f := openFlags{
		server: serverFlags{bin: bin, profileDir: prof}, devices: 64, rates: []float64{200, 400}, contacts: 4, size: 256,
		warmup: 500 * time.Millisecond, duration: 1500 * time.Millisecond,
		groupShare: 0.1, receiptShare: 0.5, groupSize: 4,
	}
	if err := f.validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := openLoop(ctx, f, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.lost != 0 || res.duplicates != 0 || res.failed != 0 || res.unanswered != 0 || res.streamsEnded != 0 {
		t.Fatalf("lost %d, duplicates %d, failed %d, unanswered %d, send streams ended %d: want none", res.lost, res.duplicates, res.failed, res.unanswered, res.streamsEnded)
	}
	if len(res.phases) != 2 {
		t.Fatalf("%d phases, want 2", len(res.phases))
	}
	for _, ph := range res.phases {
		// Group messages reach three devices and receipts add deliveries: at least the
		// offered rate arrives, on a loaded machine with a generous margin.
		if ph.achieved < 0.7*ph.offered || ph.p50 <= 0 || ph.p99 < ph.p50 || ph.p999 < ph.p99 {
			t.Errorf("phase at %.0f msg/s: achieved %.0f, p50 %v, p99 %v, p999 %v", ph.offered, ph.achieved, ph.p50, ph.p99, ph.p999)
		}
		if ph.cpuPerMsg <= 0 || ph.rss <= 0 {
			t.Errorf("phase at %.0f msg/s: server CPU per delivery %v, RSS %d: not measured", ph.offered, ph.cpuPerMsg, ph.rss)
		}
	}
	for _, name := range []string{"cpu.pprof", "allocs.pprof"} {
		if st, err := os.Stat(filepath.Join(prof, name)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s not written: %v", name, err)
		}
	}
	svg := latencyCurveSVG(res.phases)
	if err := xml.Unmarshal(svg, new(struct{})); err != nil {
		t.Fatalf("the curve is not well-formed XML: %v", err)
	}
	if n := strings.Count(string(svg), "<polyline"); n != 3 {
		t.Fatalf("the curve has %d series, want p50, p99 and p999", n)
	}
}

// TestHistogramPercentiles checks the latency histogram against known quantiles: its
// buckets are 1 % wide.
func TestHistogramPercentiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}} {
		got := h.pct(c.p)
		if got < c.want || float64(got) > 1.021*float64(c.want) {
			t.Errorf("p%g = %v, want %v within 2 %%", 100*c.p, got, c.want)
		}
	}
}

// TestOpenFlagsMix parses the mix and the sweep.
func TestOpenFlagsMix(t *testing.T) {
	f, err := parseOpenFlags([]string{"-mix", "group=0.2,receipt=0.5", "-rate", "1000,2000"})
	if err != nil {
		t.Fatal(err)
	}
	if f.groupShare != 0.2 || f.receiptShare != 0.5 || len(f.rates) != 2 || f.svg == "" {
		t.Fatalf("parsed %+v", f)
	}
	for _, bad := range [][]string{{"-mix", "group=2"}, {"-mix", "votes=0.1"}, {"-rate", "0"}, {"-size", "8"}} {
		if _, err := parseOpenFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
