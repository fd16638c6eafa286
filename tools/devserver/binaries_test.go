package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// binaries holds the commands this test binary built, one build per package: several
// tests run the same server binary, and linking it again for each cost minutes of the
// package's ten under load.
var binaries struct {
	sync.Mutex
	dir  string
	path map[string]string
}

// TestMain removes the built commands when every test has run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// buildBinary builds a command of the module once per test binary and returns its path.
func buildBinary(t *testing.T, pkg string) string {
	t.Helper()
	binaries.Lock()
	defer binaries.Unlock()
	if bin, ok := binaries.path[pkg]; ok {
		return bin
	}
	if binaries.dir == "" {
		dir, err := os.MkdirTemp("", "devserver-test-bin")
		if err != nil {
			t.Fatal(err)
		}
		binaries.dir, binaries.path = dir, map[string]string{}
	}
	bin := filepath.Join(binaries.dir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "_"))
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir = "../.."
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build %s: %v", pkg, err)
	}
	binaries.path[pkg] = bin
	return bin
}

// runBinary starts bin as a child process and returns it with the submatches of the first
// stdout line matching ready. The process is killed when the test ends.
func runBinary(t *testing.T, bin string, ready *regexp.Regexp, args ...string) (*exec.Cmd, []string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan []string, 1)
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if m := ready.FindStringSubmatch(lines.Text()); m != nil {
				found <- m
			}
		}
	}()
	select {
	case m := <-found:
		return cmd, m
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not start", bin)
	}
	return nil, nil
}
