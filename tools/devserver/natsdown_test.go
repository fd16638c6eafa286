package main

import (
	"bytes"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestUnreachableNATSStopsStart checks that the all-in-one server and a service given a
// NATS cluster that does not answer exit non-zero at once with an error naming NATS and
// the address, without the password of the URL.
func TestUnreachableNATSStopsStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	url := "nats://guardyn:s3cret@127.0.0.1:" + port
	for _, pkg := range []string{"./tools/devserver", "./services/auth/cmd/auth"} {
		bin := buildBinary(t, pkg)
		cmd := exec.Command(bin, "-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
			"-nats-url", url, "-nats-replicas", "3")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%s still running a minute after start without NATS", pkg)
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("%s: exit %v, want a non-zero exit; stderr:\n%s", pkg, err, stderr.String())
		}
		msg := stderr.String()
		if !strings.Contains(msg, "nats cluster nats://redacted@127.0.0.1:"+port+" unreachable") {
			t.Errorf("%s: stderr does not name the unreachable NATS cluster:\n%s", pkg, msg)
		}
		if strings.Contains(msg, "s3cret") {
			t.Errorf("%s: stderr carries the NATS password:\n%s", pkg, msg)
		}
	}
}
