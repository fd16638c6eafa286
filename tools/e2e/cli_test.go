package e2e_test

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/guardyn/guardyn/tools/clienttest"
)

// cli runs the real guardyn binary against an in-process platform.
type cli struct {
	bin, server, dir string
}

func buildCLI(t *testing.T) *cli {
	t.Helper()
	p := clienttest.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "guardyn")
	build := exec.Command("go", "build", "-o", bin, "github.com/guardyn/guardyn/apps/guardyn")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return &cli{bin: bin, server: p.Addr, dir: dir}
}

func (c *cli) command(profile string, args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(),
		"GUARDYN_PASSPHRASE="+clienttest.Passphrase,
		"GUARDYN_SERVER="+c.server,
		"GUARDYN_HOME="+filepath.Join(c.dir, "profiles", profile),
		"HOME="+c.dir,
	)
	return cmd
}

// run runs a command to completion and returns its stdout, stderr and exit code.
func (c *cli) run(t *testing.T, profile string, args ...string) (string, string, int) {
	t.Helper()
	cmd := c.command(profile, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (c *cli) ok(t *testing.T, profile string, args ...string) string {
	t.Helper()
	out, errOut, code := c.run(t, profile, args...)
	if code != 0 {
		t.Fatalf("guardyn %v exited %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

// background starts a long-running command and returns its stdout and stderr lines,
// merged, on a channel.
func (c *cli) background(t *testing.T, profile string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := c.command(profile, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	var wg sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
	}
	go func() {
		wg.Wait()
		close(lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, lines
}

func waitLine(t *testing.T, lines <-chan string, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	var seen []string
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before a line matching %s; it printed:\n%s", re, strings.Join(seen, "\n"))
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no line matching %s within 30s; it printed:\n%s", re, strings.Join(seen, "\n"))
		}
	}
}

func TestCLIWalkthrough(t *testing.T) {
	c := buildCLI(t)

	for _, cmd := range []string{"register", "login", "whoami", "devices", "link", "approve", "reject", "remove-device",
		"send", "listen", "typing", "history", "safety-number", "trust", "export", "delete-account"} {
		_, errOut, code := c.run(t, "nobody", cmd, "--help")
		if code != 0 || !strings.Contains(errOut, "usage: guardyn "+cmd) || !strings.Contains(errOut, "-home") {
			t.Errorf("guardyn %s --help: exit %d, output %q", cmd, code, errOut)
		}
	}

	out := c.ok(t, "alice", "register", "--device-name", "alice-phone", "alice")
	if !strings.Contains(out, "registered alice") || !strings.Contains(out, "device 1") {
		t.Fatalf("register output: %s", out)
	}
	c.ok(t, "bob", "register", "bob")
	if out := c.ok(t, "alice", "login"); out != "logged in\n" {
		t.Fatalf("login: %q", out)
	}
	if out := c.ok(t, "alice", "whoami"); !strings.Contains(out, "username:    alice") {
		t.Fatalf("whoami: %s", out)
	}

	if out := c.ok(t, "alice", "send", "bob", "hello from the cli"); !strings.HasPrefix(out, "sent ") {
		t.Fatalf("send output: %s", out)
	}
	if out := c.ok(t, "bob", "listen", "--once"); !strings.Contains(out, "alice: hello from the cli") {
		t.Fatalf("bob's listen: %q", out)
	}
	if out := c.ok(t, "bob", "listen", "--once"); out != "" {
		t.Fatalf("bob's second listen printed %q; the backlog should be gone", out)
	}
	if out := c.ok(t, "alice", "listen", "--once"); !strings.Contains(out, "receipt: bob device 1 received") {
		t.Fatalf("alice's listen: %q", out)
	}
	if out := c.ok(t, "bob", "history", "alice"); !strings.Contains(out, "alice: hello from the cli") {
		t.Fatalf("bob's history: %q", out)
	}

	sa := c.ok(t, "alice", "safety-number", "bob")
	sb := c.ok(t, "bob", "safety-number", "alice")
	numA, numB := lastLine(sa), lastLine(sb)
	if numA != numB || !regexp.MustCompile(`^(\d{5} ){11}\d{5}$`).MatchString(numA) {
		t.Fatalf("safety numbers differ or are malformed: %q vs %q", sa, sb)
	}

	// Errors are one line with the server's reason.
	_, errOut, code := c.run(t, "alice", "send", "nobody", "hi")
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "USER_NOT_FOUND") {
		t.Fatalf("send to an unknown user: exit %d, stderr %q", code, errOut)
	}
	wrong := c.command("alice", "whoami")
	wrong.Env = append(wrong.Env, "GUARDYN_PASSPHRASE=wrong")
	if out, err := wrong.CombinedOutput(); err == nil || !strings.Contains(string(out), "wrong passphrase") {
		t.Fatalf("wrong passphrase: %v, %q", err, out)
	}

	// A second device for bob, approved from the first.
	link, lines := c.background(t, "bob-laptop", "link", "--device-name", "bob-laptop", "bob")
	m := waitLine(t, lines, regexp.MustCompile(`guardyn approve (\S+)`))
	pending := c.ok(t, "bob", "approve")
	if !strings.Contains(pending, m[1]) || !strings.Contains(pending, "bob-laptop") {
		t.Fatalf("approve listing: %q", pending)
	}
	if out := c.ok(t, "bob", "approve", m[1]); !strings.Contains(out, "as device 2") {
		t.Fatalf("approve: %q", out)
	}
	waitLine(t, lines, regexp.MustCompile(`linked: this profile is device 2 of bob`))
	if err := link.Wait(); err != nil {
		t.Fatalf("link exited with %v", err)
	}
	if out := c.ok(t, "bob", "devices"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "(this device)") {
		t.Fatalf("devices: %q", out)
	}

	// Live: the laptop listens; alice types and sends; both arrive without a restart.
	listen, live := c.background(t, "bob-laptop", "listen")
	waitLine(t, live, regexp.MustCompile(`^-- backlog done`))
	c.ok(t, "alice", "typing", "bob")
	waitLine(t, live, regexp.MustCompile(`alice is typing\.\.\.`))
	c.ok(t, "alice", "send", "bob", "both your devices get this")
	waitLine(t, live, regexp.MustCompile(`alice: both your devices get this`))
	if err := listen.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range live {
		// drain until the process closes its output
	}
	if err := listen.Wait(); err != nil {
		t.Fatalf("listen after Ctrl-C exited with %v", err)
	}
	if out := c.ok(t, "bob", "listen", "--once"); !strings.Contains(out, "alice: both your devices get this") {
		t.Fatalf("bob's phone: %q", out)
	}
	if out := c.ok(t, "alice", "export"); !regexp.MustCompile(`"username":\s+"alice"`).MatchString(out) {
		t.Fatalf("export: %q", out)
	}
	if _, errOut, code := c.run(t, "alice", "delete-account"); code != 1 || !strings.Contains(errOut, "--confirm") {
		t.Fatalf("delete-account without --confirm: exit %d, %q", code, errOut)
	}
	c.ok(t, "alice", "delete-account", "--confirm", "alice")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
