package main

import (
	"bufio"
	"net"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestGoRunStopsOnSIGTERM runs the README's command, `go run ./tools/devserver`, and stops
// the go command with SIGTERM, as a process manager or `kill` would: the server must stop
// too and free its port, not linger as an orphan.
func TestGoRunStopsOnSIGTERM(t *testing.T) {
	cmd := exec.Command("go", "run", ".", "-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, nothing of the group outlives the test.
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	ready := regexp.MustCompile(`gRPC on (\S+),`)
	addr := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if m := ready.FindStringSubmatch(lines.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var grpcAddr string
	select {
	case grpcAddr = <-addr:
	case <-time.After(3 * time.Minute):
		t.Fatal("go run ./tools/devserver did not start")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, err := net.Listen("tcp", grpcAddr)
		if err == nil {
			l.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after SIGTERM to go run, the server still holds %s: %v", grpcAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
