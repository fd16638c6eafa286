package repocheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/tools/repocheck/bzlmod"
)

// externalLabel matches the repository of an external label in a Starlark
// string: "@org_golang_google_grpc//codes" -> org_golang_google_grpc.
var externalLabel = regexp.MustCompile(`"@{1,2}([A-Za-z0-9_.~+-]*)//`)

// TestBuildLabelsVisible checks that every external repository a BUILD file
// names is visible to the root module: brought in by use_repo(go_deps) or a
// bazel_dep. Gazelle resolves an import to a go_deps repository whether or
// not go.mod marks the module direct; without this check a BUILD file can
// name a repository MODULE.bazel does not import, which only `bazel build`
// would report.
func TestBuildLabelsVisible(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "MODULE.bazel"))
	if err != nil {
		t.Fatal(err)
	}
	visible, err := visibleRepos(src)
	if err != nil {
		t.Fatal(err)
	}
	files, err := buildFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no BUILD.bazel file found; the root one at least must exist")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, repo := range labelRepos(b) {
			if !visible[repo] {
				rel, _ := filepath.Rel(root, f)
				t.Errorf("%s names @%s, which MODULE.bazel does not bring into scope (a module go.mod marks indirect? run go mod tidy, then tools/ci/regen.sh)", rel, repo)
			}
		}
	}
}

// visibleRepos returns the repository names the root module can use:
// its use_repo(go_deps) list, its bazel_deps, and Bazel's own.
func visibleRepos(moduleBazel []byte) (map[string]bool, error) {
	repos, err := bzlmod.UseRepos(moduleBazel, "go_deps")
	if err != nil {
		return nil, err
	}
	visible := map[string]bool{"": true, "bazel_tools": true}
	for _, r := range repos {
		visible[r] = true
	}
	for _, dep := range []string{"rules_go", "gazelle"} {
		if _, err := bzlmod.BazelDepVersion(moduleBazel, dep); err != nil {
			return nil, err
		}
		visible[dep] = true
	}
	return visible, nil
}

// labelRepos returns the external repositories named in a BUILD file,
// sorted and without duplicates. Comments are skipped.
func labelRepos(build []byte) []string {
	seen := map[string]bool{}
	for _, line := range strings.Split(string(build), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range externalLabel.FindAllStringSubmatch(line, -1) {
			seen[m[1]] = true
		}
	}
	var repos []string
	for r := range seen {
		repos = append(repos, r)
	}
	sort.Strings(repos)
	return repos
}

// buildFiles returns the BUILD.bazel files of the product module: not in
// the separate modules, Bazel's output links, hidden directories or caches.
func buildFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "bazel-") ||
				rel == "tools/buildtools" || rel == "release" || rel == "data" || rel == "nix") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "BUILD.bazel" || d.Name() == "BUILD" {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

func TestLabelRepos(t *testing.T) {
	build := []byte(`load("@rules_go//go:def.bzl", "go_library")
# "@commented_out//x"
go_library(
    deps = [
        "//libs/kv",
        ":local",
        "@com_github_nats_io_nats_go//:nats_go",
        "@@canonical~name//pkg",
        "@org_golang_google_grpc//codes", "@org_golang_google_grpc//status",
    ],
)
`)
	want := []string{"canonical~name", "com_github_nats_io_nats_go", "org_golang_google_grpc", "rules_go"}
	if got := labelRepos(build); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("labelRepos = %q, want %q", got, want)
	}
	visible, err := visibleRepos([]byte(`bazel_dep(name = "rules_go", version = "1")
bazel_dep(name = "gazelle", version = "1")
use_repo(go_deps, "org_golang_google_grpc")
`))
	if err != nil {
		t.Fatal(err)
	}
	var invisible []string
	for _, r := range want {
		if !visible[r] {
			invisible = append(invisible, r)
		}
	}
	if strings.Join(invisible, " ") != "canonical~name com_github_nats_io_nats_go" {
		t.Errorf("invisible repos = %q", invisible)
	}
}
