package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestBacklogReconnectsKeepServerMemoryBounded runs the backlog scenario against a real
// devserver process: 20 devices each hold 16 MiB of group messages and reconnect in a
// loop for 5 seconds. Each stream reads and sends at most a fixed budget at a time (or one
// message larger than it), so the server's resident memory grows by at most perStream per
// device, whatever the backlog: with 256 KiB messages a stream holds the record read, its
// decoded copy and the encoded response (which grpc-go's buffer pool rounds up to 1 MiB),
// and the garbage collector lets the heap reach twice what is live. By hand, 100 devices
// grew it by 4.3 MiB each with 16 and with 128 MiB of backlog (docs/perf-throughput.md).
// Reading a stream's backlog up to its window of 1024 messages at once took 46 MiB per
// device here and would take 256 MiB with a full window (issue 18, finding 2).
func TestBacklogReconnectsKeepServerMemoryBounded(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "devserver")
	build := exec.Command("go", "build", "-o", bin, "github.com/guardyn/guardyn/tools/devserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build devserver: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const devices, perStream = 20, 6 << 20
	res, err := backlog(ctx, backlogFlags{server: serverFlags{bin: bin}, devices: devices, backlogMiB: 16, messageKiB: 256, responses: 4, duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if grew := res.peakRSS - res.baseRSS; grew > devices*perStream {
		t.Fatalf("server RSS grew by %.1f MiB (%.1f to %.1f MiB) for %d reconnecting devices; the bound is %d MiB per device",
			mib(grew), mib(res.baseRSS), mib(res.peakRSS), devices, perStream>>20)
	}
	if res.failed > 0 || res.reconnects < devices || res.received == 0 {
		t.Fatalf("%d reconnects (%d failed, the first with %v) received %d bytes: the devices did not read their backlogs", res.reconnects, res.failed, res.firstErr, res.received)
	}
}
