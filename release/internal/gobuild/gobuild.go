// Package gobuild builds Guardyn's binaries reproducibly: the same source
// at the same commit gives the same bytes in any directory on any machine
// with the same Go toolchain.
//
// What makes a Go build reproducible, and why each setting is fixed:
//   - CGO_ENABLED=0: no C toolchain, whose paths and versions leak in;
//     the binaries are static, which the scratch images need anyway.
//   - -trimpath: no checkout or module cache paths in the binary.
//   - -buildvcs=false: no VCS stamp (a dirty flag, a time) that differs
//     between checkouts; the commit is passed explicitly instead.
//   - -ldflags '-s -w -buildid= -X …': no symbol table, no DWARF, no build
//     id derived from the inputs' paths; version and commit fixed by flags.
//   - GOFLAGS, GOAMD64, GOARM64, GOEXPERIMENT set explicitly, so the
//     caller's environment cannot change the output.
//   - GOTOOLCHAIN=[Toolchain]: one pinned Go, whatever Go the machine has.
package gobuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Target is one binary of a release.
type Target struct {
	Name    string // the binary's and image's name, e.g. "auth"
	Package string // the main package, relative to the product module root
	Image   bool   // packed into an OCI image (servers); the CLI is not
	// Assets, when set, is a main package of the product that writes the
	// files the image serves (`go run Assets -o DIR`, [AssetsCmd]); the
	// image carries them under AssetsDir. The web app: apps/web/build
	// writes apps/web/dist, which guardyn-web serves.
	Assets, AssetsDir string
}

// Targets are every binary a release ships: the services, the all-in-one
// server, the web app's server (with the app) and the command-line client.
var targets = []Target{
	{Name: "auth", Package: "./services/auth/cmd/auth", Image: true},
	{Name: "messaging", Package: "./services/messaging/cmd/messaging", Image: true},
	{Name: "media", Package: "./services/media/cmd/media", Image: true},
	{Name: "presence", Package: "./services/presence/cmd/presence", Image: true},
	{Name: "notification", Package: "./services/notification/cmd/notification", Image: true},
	{Name: "guardyn-server", Package: "./tools/devserver", Image: true},
	{Name: "guardyn-web", Package: "./apps/guardyn-web", Image: true, Assets: "./apps/web/build", AssetsDir: "usr/local/share/guardyn/web"},
	{Name: "guardyn", Package: "./apps/guardyn"},
}

// Targets returns every release target, in a fixed order.
func Targets() []Target { return append([]Target(nil), targets...) }

// Select returns the targets with the given names (all of them when names is
// empty), or an error naming an unknown one.
func Select(names []string) ([]Target, error) {
	if len(names) == 0 {
		return Targets(), nil
	}
	var out []Target
	for _, n := range names {
		found := false
		for _, t := range targets {
			if t.Name == n {
				out = append(out, t)
				found = true
			}
		}
		if !found {
			var known []string
			for _, t := range targets {
				known = append(known, t.Name)
			}
			return nil, fmt.Errorf("unknown service %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// Platform is a GOOS/GOARCH pair.
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// Platforms are the platforms a release is built for.
var Platforms = []Platform{{"linux", "amd64"}, {"linux", "arm64"}}

// Toolchain is the Go every release binary is built with, whatever Go the
// build machine has: the go command runs it by GOTOOLCHAIN, fetching it once
// from the module proxy as the module golang.org/toolchain (checked against
// the checksum database, then kept in the module cache). Pinned rather than
// taken from the machine because the standard library is most of every
// binary: its version decides the bytes, and the vulnerability audit
// refuses a release whose standard library lacks a published fix (the
// machines' go1.26.8 lacks those of go1.26.9). The product module itself
// keeps building and testing with the machine's Go.
const Toolchain = "go1.27.3"

// ToolchainModule is the module (path@version) the go command downloads
// for [Toolchain] on a goos/goarch host.
func ToolchainModule(goos, goarch string) string {
	return "golang.org/toolchain@v0.0.1-" + Toolchain + "." + goos + "-" + goarch
}

// VersionPackage holds the variables the release's -X flags set.
const VersionPackage = "github.com/guardyn/guardyn/libs/buildinfo"

// Stamp is what a build embeds to identify itself.
type Stamp struct {
	Version string // a semver tag, e.g. v0.3.0
	Commit  string // the full commit hash of the source
}

var semverRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// ValidVersion reports whether v is a semantic version with a leading "v",
// as Go module tags are (v0.3.0, v1.2.3-rc.1).
func ValidVersion(v string) error {
	if !semverRE.MatchString(v) {
		return fmt.Errorf("version %q is not semver (want vMAJOR.MINOR.PATCH, e.g. v0.3.0)", v)
	}
	return nil
}

// Command is one go build invocation, recorded exactly as it ran so the
// provenance can state it and a rebuild can repeat it.
type Command struct {
	Dir  string   `json:"-"` // the source root; not part of the record (it differs per checkout)
	Args []string `json:"args"`
	Env  []string `json:"env"`
}

// Cmd returns the go build command for one target and platform, writing
// the binary to out.
func Cmd(src string, t Target, p Platform, s Stamp, out string) Command {
	ldflags := fmt.Sprintf("-s -w -buildid= -X %s.Version=%s -X %s.Commit=%s", VersionPackage, s.Version, VersionPackage, s.Commit)
	return Command{
		Dir:  src,
		Args: []string{"go", "build", "-trimpath", "-buildvcs=false", "-mod=readonly", "-ldflags=" + ldflags, "-o", out, t.Package},
		Env: []string{
			"CGO_ENABLED=0",
			"GOOS=" + p.OS,
			"GOARCH=" + p.Arch,
			"GOAMD64=v1",
			"GOARM64=v8.0",
			"GOEXPERIMENT=",
			"GOFLAGS=",
			"GOWORK=off",
			"GOTOOLCHAIN=" + Toolchain,
		},
	}
}

// AssetsCmd returns the command that writes t's assets into out: the
// product's own build of them (`go run t.Assets -o out`), with the pinned
// toolchain and the environment of [Cmd] but for the target platform (the
// assets are the same for every platform: the web app is WebAssembly).
func AssetsCmd(src string, t Target, out string) Command {
	return Command{
		Dir:  src,
		Args: []string{"go", "run", "-trimpath", "-mod=readonly", t.Assets, "-o", out},
		Env: []string{
			"CGO_ENABLED=0",
			"GOEXPERIMENT=",
			"GOFLAGS=",
			"GOWORK=off",
			"GOTOOLCHAIN=" + Toolchain,
		},
	}
}

// Run runs the command with the process environment plus c.Env (which
// wins), and returns the go command's output in the error on failure.
func (c Command) Run(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(c.Args, " "), err, out.String())
	}
	return nil
}

// Binary is a built binary.
type Binary struct {
	Target   Target
	Platform Platform
	Path     string
	Command  Command
}

// FileName is the binary's name in a bundle: name-os-arch.
func (b Binary) FileName() string {
	return fmt.Sprintf("%s-%s-%s", b.Target.Name, b.Platform.OS, b.Platform.Arch)
}

// BuildAll builds every target for every platform into outDir, at most
// parallel at a time, calling progress after each binary.
func BuildAll(ctx context.Context, src string, ts []Target, s Stamp, outDir string, progress func(Binary)) ([]Binary, error) {
	if err := ValidVersion(s.Version); err != nil {
		return nil, err
	}
	if s.Commit == "" {
		return nil, errors.New("build: no commit")
	}
	var bins []Binary
	for _, t := range ts {
		for _, p := range Platforms {
			b := Binary{Target: t, Platform: p}
			b.Path = filepath.Join(outDir, b.FileName())
			b.Command = Cmd(src, t, p, s, b.Path)
			bins = append(bins, b)
		}
	}
	// The go command parallelizes compilation itself; building binaries one
	// at a time keeps memory bounded on small machines and costs little
	// once the package cache is warm.
	for _, b := range bins {
		if err := b.Command.Run(ctx); err != nil {
			return nil, fmt.Errorf("building %s for %s: %w", b.Target.Name, b.Platform, err)
		}
		if progress != nil {
			progress(b)
		}
	}
	sort.SliceStable(bins, func(i, j int) bool { return bins[i].FileName() < bins[j].FileName() })
	return bins, nil
}

// Output runs the command like Run and returns its standard output,
// trimmed.
func (c Command) Output(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(c.Args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}
