package gobuild

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinariesReproducibleAcrossCheckouts clones HEAD into two directories
// of different depth and builds a server binary in each: the bytes are
// identical, carry the version and commit stamp and were compiled by the
// pinned toolchain, not the machine's Go. (The whole release,
// every target and platform, is compared by internal/bundle
// TestReleaseIsReproducible.)
func TestBinariesReproducibleAcrossCheckouts(t *testing.T) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := strings.TrimSpace(string(out))
	tmp := t.TempDir()
	srcs := []string{filepath.Join(tmp, "a"), filepath.Join(tmp, "b", "deeper", "checkout")}
	stamp := Stamp{Version: "v0.0.0-repro.1", Commit: strings.Repeat("c0ffee", 6) + "c0ff"}
	var bins [][]byte
	for _, src := range srcs {
		if out, err := exec.Command("git", "clone", "--quiet", "--no-hardlinks", root, src).CombinedOutput(); err != nil {
			t.Fatalf("git clone: %v\n%s", err, out)
		}
		bin := filepath.Join(src, "auth")
		if err := Cmd(src, targets[0], Platforms[0], stamp, bin).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		bins = append(bins, b)
	}
	if !bytes.Equal(bins[0], bins[1]) {
		t.Fatalf("the two checkouts built different binaries (%d and %d bytes)", len(bins[0]), len(bins[1]))
	}
	for _, want := range []string{stamp.Version, stamp.Commit} {
		if !bytes.Contains(bins[0], []byte(want)) {
			t.Errorf("the binary does not carry %q", want)
		}
	}
	bi, err := buildinfo.Read(bytes.NewReader(bins[0]))
	if err != nil {
		t.Fatal(err)
	}
	if bi.GoVersion != Toolchain {
		t.Errorf("built with %s, want the pinned %s", bi.GoVersion, Toolchain)
	}
	if bytes.Contains(bins[0], []byte(tmp)) {
		t.Error("the binary contains its checkout's path")
	}
}
