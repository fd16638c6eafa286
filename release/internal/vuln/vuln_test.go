package vuln

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/guardyn/guardyn/release/internal/gobuild"
)

// TestKnownVulnerableModuleIsReported: a module calling
// golang.org/x/text/language.ParseAcceptLanguage at v0.3.7 (GO-2022-1059)
// is reported at symbol level in source mode and in binary mode, with the
// offline database built from the pinned vulndb and the release's pinned
// toolchain (whose standard library has no published vulnerability, so a
// clean product release is not a blind audit).
func TestKnownVulnerableModuleIsReported(t *testing.T) {
	ctx := context.Background()
	db, err := CachedDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := filepath.Abs("testdata/vulnerable")
	if err != nil {
		t.Fatal(err)
	}
	src, err := ScanSource(ctx, db, mod, gobuild.Toolchain, ".")
	if err != nil {
		t.Fatal(err)
	}
	if got := src.Vulnerable(); !slices.Contains(got, "GO-2022-1059") {
		t.Fatalf("source mode reported %v, want GO-2022-1059", got)
	}

	bin := filepath.Join(t.TempDir(), "vulnerable")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Dir = mod
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0", "GOTOOLCHAIN="+gobuild.Toolchain)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	binRep, err := ScanBinary(ctx, db, gobuild.Toolchain, bin)
	if err != nil {
		t.Fatal(err)
	}
	if got := binRep.Vulnerable(); !slices.Contains(got, "GO-2022-1059") {
		t.Fatalf("binary mode reported %v, want GO-2022-1059", got)
	}
}

func TestParseIsNormalized(t *testing.T) {
	stream := []byte(`{"config":{"db":"file:///x"}}
{"progress":{"message":"Scanning...","time":"2026-01-01T00:00:00Z"}}
{"osv":{"id":"GO-2"}}
{"osv":{"id":"GO-1"}}
{"finding":{"osv":"GO-2","trace":[{"module":"m"}]}}
{"finding":{"osv":"GO-1","trace":[{"module":"m","function":"F"}]}}
`)
	r, err := Parse(stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.OSV) != 2 || string(r.OSV[0]) != `{"id":"GO-1"}` {
		t.Fatalf("osv entries not sorted: %s", r.OSV)
	}
	if got := r.Vulnerable(); len(got) != 1 || got[0] != "GO-1" {
		t.Fatalf("Vulnerable() = %v, want only the symbol-level GO-1", got)
	}
	if _, err := Parse([]byte(`{"osv":{}}`)); err == nil {
		t.Fatal("a stream without config parsed")
	}
	if _, err := Parse([]byte(`{"config":`)); err == nil {
		t.Fatal("truncated stream parsed")
	}
}

// FuzzParse: reports in a bundle are untrusted; any bytes give a report or
// an error, never a panic, and a parsed report's entries are sorted.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"config":{}}` + "\n" + `{"finding":{"osv":"GO-1","trace":[{"function":"F"}]}}`))
	f.Add([]byte(`{"osv":{"id":"x"}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := Parse(in)
		if err != nil {
			return
		}
		if r.Config == nil {
			t.Fatal("a report without config parsed")
		}
		r.Vulnerable()
	})
}
