package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestUnreachableKVExits: a server started with a kv store that does not answer (--kv,
// or GUARDYN_KV, naming a closed port) exits non-zero within the connect timeout with
// an error naming the store, instead of serving without it or retrying for minutes; a
// malformed address is a usage error (exit 2) before anything starts. The all-in-one
// server and a service binary (auth) both behave so.
func TestUnreachableKVExits(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "tikv://" + l.Addr().String()
	l.Close()
	bins := map[string]string{}
	for _, pkg := range []string{"./tools/devserver", "./services/auth/cmd/auth"} {
		bins[pkg] = buildBinary(t, pkg)
	}
	type run struct {
		name, bin, kv string
		viaEnv        bool
		code          int
		want          string
	}
	runs := []run{
		{"devserver flag", bins["./tools/devserver"], addr, false, 1, "kv store " + addr + ": "},
		{"devserver env", bins["./tools/devserver"], addr, true, 1, "kv store " + addr + ": "},
		{"auth flag", bins["./services/auth/cmd/auth"], addr, false, 1, "kv store " + addr + ": "},
		{"devserver bad port", bins["./tools/devserver"], "tikv://pd1:99999", false, 2, `bad kv address "tikv://pd1:99999": PD endpoint "pd1:99999": bad port`},
		{"auth unknown scheme", bins["./services/auth/cmd/auth"], "tivk://pd1:2379", true, 2, `bad kv address "tivk://pd1:2379": unknown scheme`},
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() {
			dir := t.TempDir()
			args := []string{"--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"}
			if strings.HasPrefix(r.name, "devserver") {
				args = args[:6]
			}
			// A server that ignored the store would serve until killed at this deadline.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, r.bin, args...)
			if r.viaEnv {
				cmd.Env = append(cmd.Environ(), "GUARDYN_KV="+r.kv)
			} else {
				cmd.Args = append(cmd.Args, "--kv", r.kv)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != r.code || ctx.Err() != nil {
				t.Errorf("%s: %v after %v; want exit code %d (stderr %q)", r.name, err, took, r.code, stderr.String())
				return
			}
			if !strings.Contains(stderr.String(), r.want) {
				t.Errorf("%s: stderr %q does not say %q", r.name, stderr.String(), r.want)
			}
			t.Logf("%s: exit %d after %v", r.name, r.code, took.Round(time.Millisecond))
		})
	}
	wg.Wait()
}
