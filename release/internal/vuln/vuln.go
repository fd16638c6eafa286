// Package vuln audits a release for known vulnerabilities with govulncheck
// (golang.org/x/vuln/cmd/govulncheck at [ScannerVersion], built by the
// release's pinned Go toolchain), fully offline: the database
// is built from the golang.org/x/vulndb module, whose version [DBModule]
// pins, with its cmd/indexdb, into the layout `govulncheck -db file://…`
// reads. Source mode scans the product module (reachable symbols); binary
// mode scans each built binary.
//
// A pinned database makes the audit reproducible; refreshing it is a
// one-line change of [DBVersion] (docs/release.md).
package vuln

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ScannerVersion is the version of golang.org/x/vuln whose govulncheck
// runs the audit.
const ScannerVersion = "v1.10.0"

// The vulnerability database: golang.org/x/vulndb at a fixed version,
// fetched through the Go module proxy (or the module cache) like any
// module.
const (
	DBModule  = "golang.org/x/vulndb"
	DBVersion = "v0.0.0-20261105234957-e22db6528018"
)

// BuildDB writes the govulncheck database into dir (which must not exist)
// from the pinned vulndb module, running its cmd/indexdb.
func BuildDB(ctx context.Context, dir string) error {
	out, err := goCmd(ctx, "", nil, "mod", "download", "-json", DBModule+"@"+DBVersion)
	if err != nil {
		return fmt.Errorf("vulndb: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("vulndb: go mod download: no directory in %q", out)
	}
	osv := filepath.Join(mod.Dir, "data", "osv")
	if _, err := os.Stat(osv); err != nil {
		return fmt.Errorf("vulndb: %w", err)
	}
	return BuildDBFrom(ctx, osv, dir)
}

// OSVDir returns the directory of OSV files of the pinned vulndb module.
func OSVDir(ctx context.Context) (string, error) {
	out, err := goCmd(ctx, "", nil, "mod", "download", "-json", DBModule+"@"+DBVersion)
	if err != nil {
		return "", fmt.Errorf("vulndb: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("vulndb: go mod download: no directory in %q", out)
	}
	return filepath.Join(mod.Dir, "data", "osv"), nil
}

// BuildDBFrom writes the govulncheck database for the OSV files in osv
// into dir with the pinned vulndb's cmd/indexdb.
func BuildDBFrom(ctx context.Context, osv, dir string) error {
	// indexdb builds in package@version mode: its own go.mod, not release's.
	if _, err := goCmd(ctx, "", []string{"GOFLAGS="}, "run", DBModule+"/cmd/indexdb@"+DBVersion, "-vulns", osv, "-out", dir); err != nil {
		return fmt.Errorf("vulndb: indexdb: %w", err)
	}
	return nil
}

func goCmd(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// Report is a normalized govulncheck JSON report: progress messages
// dropped, entries sorted, so the same inputs give the same bytes.
type Report struct {
	Config   json.RawMessage   `json:"config"`
	SBOM     json.RawMessage   `json:"sbom,omitempty"`
	OSV      []json.RawMessage `json:"osv"`
	Findings []Finding         `json:"findings"`
}

// Finding is one govulncheck finding.
type Finding struct {
	OSV          string          `json:"osv"`
	FixedVersion string          `json:"fixed_version,omitempty"`
	Trace        json.RawMessage `json:"trace"`
}

// Called reports whether the finding is at symbol level: the vulnerable
// code is reachable (source mode) or linked (binary mode).
func (f Finding) Called() bool {
	var trace []struct {
		Function string `json:"function"`
	}
	json.Unmarshal(f.Trace, &trace)
	return len(trace) > 0 && trace[0].Function != ""
}

// Vulnerable returns the IDs of the findings that count: symbol level, so
// the vulnerable code is in the program, sorted and unique.
func (r Report) Vulnerable() []string {
	seen := map[string]bool{}
	var ids []string
	for _, f := range r.Findings {
		if f.Called() && !seen[f.OSV] {
			seen[f.OSV] = true
			ids = append(ids, f.OSV)
		}
	}
	sort.Strings(ids)
	return ids
}

// ScanSource runs govulncheck in source mode on the packages of the module
// in dir, as built by the Go toolchain named (e.g. "go1.27.3", fetched by
// GOTOOLCHAIN): its standard library is the one the audit checks.
// govulncheck takes the standard library's version from GOVERSION in its
// environment, else from the go command on PATH without that environment
// (the machine's Go), so both are set.
//
// Source mode type-checks the standard library's source with the
// scanner's own go/types, which must know that Go version: a govulncheck
// compiled by an older Go fails on a newer standard library. So the
// scanner is built by the same toolchain (see [Scanner]). The scanner
// learns the language version of the standard library from `go list`
// run with GO111MODULE=off, where GOTOOLCHAIN does not switch toolchains:
// so the toolchain's own go command comes first in PATH.
func ScanSource(ctx context.Context, db, dir, toolchain string, patterns ...string) (Report, error) {
	out, err := goCmd(ctx, "", []string{"GOTOOLCHAIN=" + toolchain}, "env", "GOROOT")
	if err != nil {
		return Report{}, fmt.Errorf("toolchain %s: %w", toolchain, err)
	}
	goroot := strings.TrimSpace(string(out))
	args := append([]string{"-db", "file://" + db, "-format", "json", "-C", dir}, patterns...)
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOTOOLCHAIN="+toolchain, "GOVERSION="+toolchain,
		"PATH="+filepath.Join(goroot, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	return run(ctx, toolchain, env, args)
}

// ScanBinary runs govulncheck, built by toolchain, in binary mode on one
// binary.
func ScanBinary(ctx context.Context, db, toolchain, bin string) (Report, error) {
	return run(ctx, toolchain, os.Environ(), []string{"-db", "file://" + db, "-format", "json", "-mode", "binary", bin})
}

func run(ctx context.Context, toolchain string, env, args []string) (Report, error) {
	scanner, err := Scanner(ctx, toolchain)
	if err != nil {
		return Report{}, err
	}
	cmd := exec.CommandContext(ctx, scanner, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin, cmd.Env = &stdout, &stderr, bytes.NewReader(nil), env
	if err := cmd.Run(); err != nil {
		return Report{}, fmt.Errorf("govulncheck %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return Parse(stdout.Bytes())
}

// Scanner returns govulncheck at [ScannerVersion] built by the Go
// toolchain named (GOTOOLCHAIN, e.g. "go1.27.3"), building it on first use
// into the user's cache directory, keyed by both versions.
func Scanner(ctx context.Context, toolchain string) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "guardyn-release", "govulncheck-"+ScannerVersion+"-"+toolchain)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(bin), ".govulncheck-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// package@version mode: x/vuln's own go.mod, as pinned by its release.
	if _, err := goCmd(ctx, tmp, []string{"GOBIN=" + tmp, "GOFLAGS=", "CGO_ENABLED=0", "GOTOOLCHAIN=" + toolchain},
		"install", "golang.org/x/vuln/cmd/govulncheck@"+ScannerVersion); err != nil {
		return "", fmt.Errorf("building govulncheck with %s: %w", toolchain, err)
	}
	if err := os.Rename(filepath.Join(tmp, "govulncheck"), bin); err != nil {
		if fi, statErr := os.Stat(bin); statErr == nil && fi.Mode().IsRegular() {
			return bin, nil // a concurrent build finished first
		}
		return "", err
	}
	return bin, nil
}

// Parse reads govulncheck's JSON message stream into a normalized Report.
func Parse(stream []byte) (Report, error) {
	var r Report
	dec := json.NewDecoder(bytes.NewReader(stream))
	for {
		var msg struct {
			Config  json.RawMessage `json:"config"`
			SBOM    json.RawMessage `json:"SBOM"`
			OSV     json.RawMessage `json:"osv"`
			Finding *Finding        `json:"finding"`
		}
		err := dec.Decode(&msg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Report{}, fmt.Errorf("govulncheck output: %w", err)
		}
		switch {
		case msg.Config != nil:
			r.Config = msg.Config
		case msg.SBOM != nil:
			r.SBOM = msg.SBOM
		case msg.OSV != nil:
			r.OSV = append(r.OSV, msg.OSV)
		case msg.Finding != nil:
			r.Findings = append(r.Findings, *msg.Finding)
		}
	}
	if r.Config == nil {
		return Report{}, errors.New("govulncheck output: no config message")
	}
	sort.Slice(r.OSV, func(i, j int) bool { return bytes.Compare(r.OSV[i], r.OSV[j]) < 0 })
	sort.Slice(r.Findings, func(i, j int) bool {
		a, _ := json.Marshal(r.Findings[i])
		b, _ := json.Marshal(r.Findings[j])
		return bytes.Compare(a, b) < 0
	})
	if r.OSV == nil {
		r.OSV = []json.RawMessage{}
	}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	return r, nil
}

// CachedDB returns the pinned database, building it on first use into the
// user's cache directory (keyed by [DBVersion], so a new pin rebuilds).
func CachedDB(ctx context.Context) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	db := filepath.Join(cache, "guardyn-release", "vulndb-"+DBVersion)
	if _, err := os.Stat(filepath.Join(db, "index", "db.json")); err == nil {
		return db, nil
	}
	if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(db), ".vulndb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := BuildDB(ctx, filepath.Join(tmp, "db")); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, "db"), db); err != nil {
		if _, statErr := os.Stat(filepath.Join(db, "index", "db.json")); statErr == nil {
			return db, nil // a concurrent build finished first
		}
		return "", err
	}
	return db, nil
}
