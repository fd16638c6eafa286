package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/guardyn/guardyn/libs/observe/observetest"
)

// serverFlags choose the server under test.
type serverFlags struct {
	addr string // an already running server; empty starts one
	bin  string // devserver binary to start; empty builds ./tools/devserver
	// args are extra flags for the started server: its backends (-messages, -nats-url, ...).
	args string
	// trace has the started devserver export traces of trace-ratio of its calls to an
	// OTLP collector inside loadgen, which counts them.
	trace      bool
	traceRatio float64
	// profileDir has the started devserver write its profiles there (tools/devserver
	// -profile-dir): the CPU profile of the measured time and the allocation profile.
	profileDir string
}

func (f *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "server", "", "gRPC address of a running server, started with -rate-limits=false (default: start the devserver as a child process on a fresh data dir)")
	fs.StringVar(&f.bin, "server-bin", "", "devserver binary to start (default: go build ./tools/devserver; ./tools/loadgen/mocktikvserver puts its kv on a mock TiKV)")
	fs.StringVar(&f.args, "server-args", "", "extra flags for the started server, space-separated: its backends, e.g. '-messages cql://127.0.0.1:9042/lg -nats-url nats://a:4222,nats://b:4222 -nats-replicas 3'")
	fs.BoolVar(&f.trace, "trace", false, "the devserver started traces its calls to an OTLP collector run by loadgen (metrics are always on)")
	fs.Float64Var(&f.traceRatio, "trace-ratio", 1, "with -trace: the fraction of calls traced")
	fs.StringVar(&f.profileDir, "profile", "", "write the started server's CPU profile of the measured time (cpu.pprof) and its allocation profile (allocs.pprof) to this directory")
}

// child is a devserver started for the run.
type child struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	bin  string
	args []string // extra server flags
	// collector receives the server's spans when it traces.
	collector *observetest.Collector
}

// start runs the devserver on a fresh data dir, with rate limits off, and waits until it
// listens.
func (f *serverFlags) start(ctx context.Context) (*child, error) {
	dir, err := os.MkdirTemp("", "guardyn-loadgen-")
	if err != nil {
		return nil, err
	}
	if f.profileDir != "" {
		if err := os.MkdirAll(f.profileDir, 0o755); err != nil {
			return nil, err
		}
		if f.profileDir, err = filepath.Abs(f.profileDir); err != nil {
			return nil, err
		}
	}
	bin := f.bin
	if bin == "" {
		bin = filepath.Join(dir, "devserver")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./tools/devserver")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("build devserver (run loadgen from the repository root): %w", err)
		}
	}
	c := &child{dir: dir, bin: bin}
	if f.trace {
		if c.collector, err = observetest.Start(false); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.args = []string{"-otlp-endpoint", c.collector.Addr(), "-otlp-insecure", "-trace-ratio", strconv.FormatFloat(f.traceRatio, 'g', -1, 64)}
	}
	if f.profileDir != "" {
		c.args = append(c.args, "-profile-dir", f.profileDir)
	}
	c.args = append(c.args, strings.Fields(f.args)...)
	// Every simulated device connects from 127.0.0.1, so per-peer limits on registration
	// would throttle the setup, not measure the platform.
	if err := c.launch(false); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// launch starts the server process on the child's data dir and waits until it listens.
func (c *child) launch(rateLimits bool) error {
	cmd := exec.Command(c.bin, append([]string{"-data-dir", filepath.Join(c.dir, "data"), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-rate-limits=" + strconv.FormatBool(rateLimits)}, c.args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd = cmd
	ready := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), "guardyn: gRPC on "); ok {
				addr, _, _ := strings.Cut(rest, ",")
				ready <- addr
			}
		}
	}()
	select {
	case c.addr = <-ready:
		return nil
	case <-time.After(60 * time.Second):
		c.halt()
		return fmt.Errorf("devserver did not start")
	}
}

// restart stops the server and starts it again on the same data dir: a fresh process, as
// after a deploy, that every device reconnects to, or one that enforces rate limits for
// accounts registered without them. It listens on a new address: connections made before
// must be replaced.
func (c *child) restart(rateLimits bool) error {
	c.halt()
	return c.launch(rateLimits)
}

// halt stops the server process, gracefully if it stops within 15 s.
func (c *child) halt() {
	c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

func (c *child) stop() {
	c.halt()
	if c.collector != nil {
		c.collector.Close()
	}
	os.RemoveAll(c.dir)
}

// signal sends sig to the server process.
func (c *child) signal(sig os.Signal) error {
	if c == nil || c.cmd == nil {
		return fmt.Errorf("the server is not a child of loadgen")
	}
	return c.cmd.Process.Signal(sig)
}

// profiling starts the server's CPU profile when it was asked for; the returned function
// stops it.
func (c *child) profiling(f serverFlags) (stop func(), err error) {
	if c == nil || f.profileDir == "" {
		return func() {}, nil
	}
	if err := c.signal(syscall.SIGUSR1); err != nil {
		return nil, err
	}
	return func() { c.signal(syscall.SIGUSR2) }, nil
}

// spans reports the spans the server exported, when it traces: after halt, all of them.
func (c *child) spans() (int, bool) {
	if c == nil || c.collector == nil {
		return 0, false
	}
	return c.collector.Count(), true
}

// rss returns the resident memory of the child in bytes, from /proc.
func (c *child) rss() (int64, error) {
	if c.cmd == nil {
		return 0, fmt.Errorf("the server is not a child of loadgen")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", c.cmd.Process.Pid)
}

// cpu returns the user and system CPU time the child has used, from /proc.
func (c *child) cpu() (time.Duration, error) { return procCPU(c.cmd.Process.Pid) }

// procCPU returns the user and system CPU time process pid has used, from /proc.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may hold spaces; fields count from after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// schedWait returns how long the threads of process pid (0: this process) have been
// runnable but waiting for a CPU, from /proc/<pid>/task/*/schedstat (the kernel's
// run-queue delay). Set against the CPU a process used, it tells a process that waits for
// the machine from one that waits for its own work (the disk, the network, a lock).
// Threads that ended are not counted; the Go runtime keeps its threads.
func schedWait(pid int) (time.Duration, error) {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var wait int64
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread ended
		}
		fields := strings.Fields(string(b))
		if len(fields) < 2 {
			return 0, fmt.Errorf("unexpected %s/%s/schedstat", dir, t.Name())
		}
		n, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return 0, err
		}
		wait += n
	}
	return time.Duration(wait), nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100
