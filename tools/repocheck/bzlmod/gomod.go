// Package bzlmod keeps Bazel's view of the Go dependency graph in step with
// go.mod: the repositories MODULE.bazel brings into scope with use_repo and
// the repository configuration gazelle resolves imports with, both as the
// go_deps extension derives them
// (https://github.com/bazel-contrib/bazel-gazelle/blob/master/extensions.md).
package bzlmod

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// GoMod is the part of a go.mod file that go_deps reads, in the shape
// `go mod edit -json` prints.
type GoMod struct {
	Module  struct{ Path string }
	Go      string
	Require []Require
	Tool    []struct{ Path string }
}

// Require is one requirement of a go.mod file.
type Require struct {
	Path     string
	Version  string
	Indirect bool
}

// ReadGoMod parses the go.mod file in dir with the go command, so that every
// syntax the go command accepts is read the way it reads it.
func ReadGoMod(ctx context.Context, dir string) (*GoMod, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "edit", "-json")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reading go.mod in %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return ParseGoModJSON(out)
}

// ParseGoModJSON parses the output of `go mod edit -json`.
func ParseGoModJSON(b []byte) (*GoMod, error) {
	var m GoMod
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing go mod edit -json output: %w", err)
	}
	if m.Module.Path == "" {
		return nil, fmt.Errorf("parsing go mod edit -json output: no module path")
	}
	return &m, nil
}

// RepoName returns the Bazel repository name go_deps gives the Go module
// with the given path: host labels reversed, then every character that is
// not a letter or digit replaced by '_', lowercased
// ("google.golang.org/grpc" -> "org_golang_google_grpc").
func RepoName(modulePath string) string {
	host, rest, _ := strings.Cut(modulePath, "/")
	labels := strings.Split(host, ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	name := strings.Join(labels, "_")
	if rest != "" {
		name += "_" + strings.ReplaceAll(rest, "/", "_")
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r - 'A' + 'a')
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// providedByBazelModules are Go modules that rules_go and gazelle supply
// themselves as Bazel modules; go_deps creates no repository for them.
var providedByBazelModules = map[string]bool{
	"github.com/bazelbuild/rules_go":      true,
	"github.com/bazelbuild/bazel-gazelle": true,
}

// DirectRepos returns, sorted, the repositories go_deps expects the root
// module to name in use_repo: every requirement not marked indirect, and
// every requirement that provides a package named by a tool directive
// (go_deps ignores the indirect mark for those).
func DirectRepos(m *GoMod) []string {
	var repos []string
	for _, r := range m.Require {
		if providedByBazelModules[r.Path] {
			continue
		}
		if !r.Indirect || providesTool(r.Path, m.Tool) {
			repos = append(repos, RepoName(r.Path))
		}
	}
	sort.Strings(repos)
	return dedupSorted(repos)
}

func providesTool(modulePath string, tools []struct{ Path string }) bool {
	for _, t := range tools {
		if t.Path == modulePath || strings.HasPrefix(t.Path, modulePath+"/") {
			return true
		}
	}
	return false
}

// RepoConfig returns a gazelle repository configuration (`gazelle
// -repo_config`) naming a go_repository for every requirement of m, the file
// go_deps generates for `bazel run //:gazelle`. With it gazelle resolves
// imports to the same labels outside Bazel, offline.
func RepoConfig(m *GoMod) []byte {
	reqs := append([]Require(nil), m.Require...)
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].Path < reqs[j].Path })
	var b bytes.Buffer
	b.WriteString("# Generated from go.mod by tools/repocheck/cmd/gazellerepos; do not edit.\n")
	for _, r := range reqs {
		if providedByBazelModules[r.Path] {
			continue
		}
		fmt.Fprintf(&b, "go_repository(name = %q, importpath = %q)\n", RepoName(r.Path), r.Path)
	}
	return b.Bytes()
}

func dedupSorted(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
