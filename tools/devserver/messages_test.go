package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestUnreachableMessageStoreExits: the all-in-one server started with a message store
// that does not answer (--messages, or GUARDYN_MESSAGES) exits non-zero at once with an
// error naming the store, instead of serving without it.
func TestUnreachableMessageStoreExits(t *testing.T) {
	bin := buildBinary(t, "./tools/devserver")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "cql://" + l.Addr().String() + "/guardyn"
	l.Close()
	for _, viaEnv := range []bool{false, true} {
		args := []string{"--data-dir", t.TempDir(), "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// A server that ignored the store would serve until killed at the deadline.
		cmd := exec.CommandContext(ctx, bin, args...)
		if viaEnv {
			cmd.Env = append(cmd.Environ(), "GUARDYN_MESSAGES="+addr)
		} else {
			cmd.Args = append(cmd.Args, "--messages", addr)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() <= 0 || ctx.Err() != nil {
			t.Fatalf("env %v: devserver with an unreachable store: %v; want a non-zero exit", viaEnv, err)
		}
		if !strings.Contains(stderr.String(), "message store "+addr) {
			t.Fatalf("env %v: stderr %q does not name the store %s", viaEnv, stderr.String(), addr)
		}
		t.Logf("env %v: gave up after %v", viaEnv, time.Since(start).Round(time.Millisecond))
	}
}

// TestUnreachableMediaStoreExits: the media service with --messages naming a cluster
// that does not answer (its chunks live there too) exits non-zero naming the blob store,
// at once, before it waits for the auth service.
func TestUnreachableMediaStoreExits(t *testing.T) {
	bin := buildBinary(t, "./services/media/cmd/media")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "cql://" + l.Addr().String() + "/guardyn"
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--data-dir", t.TempDir(), "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--auth-addr", l.Addr().String(), "--nats-url", "nats://"+l.Addr().String(), "--messages", addr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() <= 0 || ctx.Err() != nil {
		t.Fatalf("media with an unreachable store: %v; want a non-zero exit; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "blob store "+addr) {
		t.Fatalf("stderr %q does not name the blob store %s", stderr.String(), addr)
	}
}
