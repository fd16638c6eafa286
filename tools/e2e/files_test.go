package e2e_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// sendMarkedFile sends bob a file of marker lines, named after the marker, and checks
// that bob gets it back intact; TestNoPlaintextAtRest then scans the server for it.
func sendMarkedFile(t *testing.T, alice, bob *client.Client, marker string) {
	t.Helper()
	ctx := clienttest.Context(t)
	dir := t.TempDir()
	body := bytes.Repeat([]byte(marker+" inside a file\n"), 20000) // ~700 KiB, many chunks
	path := filepath.Join(dir, marker+".txt")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	sent, err := alice.SendFile(ctx, "bob", path)
	if err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, bob)
	entry, err := bob.FindFile(sent.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	out, err := bob.GetFile(ctx, entry, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, body) {
		t.Fatal("bob's copy of the marked file differs")
	}
}

// TestCLISendFileResumesAfterKill9: `guardyn send-file` killed with SIGKILL in the middle of
// its upload resumes, when run again, from what the server had received, and bob's `get`
// saves the same bytes.
func TestCLISendFileResumesAfterKill9(t *testing.T) {
	p := clienttest.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "guardyn")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/guardyn/guardyn/apps/guardyn").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := &cli{bin: bin, server: p.Addr, dir: dir}
	c.ok(t, "alice", "register", "alice")
	c.ok(t, "bob", "register", "bob")
	body := make([]byte, 32<<20)
	rand.Read(body)
	src := filepath.Join(dir, "video.bin")
	if err := os.WriteFile(src, body, 0o600); err != nil {
		t.Fatal(err)
	}

	send := c.command("alice", "send-file", "bob", src)
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once the server holds more than a third of the ciphertext.
	uploads := filepath.Join(p.DataDir, "blobs", "uploads")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if largestFile(uploads) >= 12<<20 {
			break
		}
		if time.Now().After(deadline) {
			send.Process.Kill()
			t.Fatal("the upload never reached 12 MiB on the server")
		}
		time.Sleep(time.Millisecond)
	}
	send.Process.Signal(syscall.SIGKILL)
	if err := send.Wait(); err == nil {
		t.Fatal("send-file finished before it was killed: the test saw nothing")
	}

	out, errOut, code := c.run(t, "alice", "send-file", "bob", src)
	if code != 0 {
		t.Fatalf("send-file after the kill exited %d: %s%s", code, out, errOut)
	}
	m := regexp.MustCompile(`resumed the upload at ([0-9.]+) MiB`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("send-file after the kill did not resume: %s%s", out, errOut)
	}
	if at, _ := strconv.ParseFloat(m[1], 64); at < 12 {
		t.Fatalf("resumed at %s MiB, the server had 12 MiB", m[1])
	}
	id := regexp.MustCompile(`as ([0-9a-f]{32})`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("send-file printed %q", out)
	}
	c.ok(t, "bob", "listen", "--once")
	got := c.ok(t, "bob", "get", id[1], dir+"/bob-downloads.bin")
	if !strings.Contains(got, "verified") {
		t.Fatalf("get printed %q", got)
	}
	if saved, _ := os.ReadFile(dir + "/bob-downloads.bin"); !bytes.Equal(saved, body) {
		t.Fatal("bob's file differs from alice's")
	}
}

// largestFile returns the size of the largest file directly in dir.
func largestFile(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Size() > n {
			n = fi.Size()
		}
	}
	return n
}

// TestCLISendFileToGroup: `guardyn send-file trip PATH` sends a file to a group; each
// member's `listen` shows it with the command to fetch it, and their `get` saves it.
func TestCLISendFileToGroup(t *testing.T) {
	c := buildCLI(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		c.ok(t, u, "register", u)
	}
	c.ok(t, "alice", "group", "create", "trip", "bob", "carol")
	body := make([]byte, 100<<10)
	rand.Read(body)
	src := filepath.Join(c.dir, "map.pdf")
	if err := os.WriteFile(src, body, 0o600); err != nil {
		t.Fatal(err)
	}
	out := c.ok(t, "alice", "send-file", "trip", src)
	id := regexp.MustCompile(`^sent file map\.pdf \(100\.0 KiB\) to group trip as ([0-9a-f]{32})\n$`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("send-file printed %q", out)
	}
	for _, u := range []string{"bob", "carol"} {
		listen := c.ok(t, u, "listen", "--once")
		if !regexp.MustCompile(`\] trip / alice: file map\.pdf \(100\.0 KiB\); fetch it with: guardyn get ` + id[1] + `\n`).MatchString(listen) {
			t.Fatalf("%s's listen printed %q", u, listen)
		}
		dst := filepath.Join(c.dir, u+"-map.pdf")
		if got := c.ok(t, u, "get", id[1], dst); !strings.Contains(got, "verified") {
			t.Fatalf("%s's get printed %q", u, got)
		}
		if saved, _ := os.ReadFile(dst); !bytes.Equal(saved, body) {
			t.Fatalf("%s's file differs from alice's", u)
		}
	}
}
