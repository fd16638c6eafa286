package repocheck

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/tools/repocheck/bzlmod"
)

var update = flag.Bool("update", false, "rewrite MODULE.bazel's go_deps use_repo from go.mod instead of failing")

// TestUseRepoMatchesGoMod checks that MODULE.bazel's use_repo(go_deps, ...)
// names exactly the direct requirements of go.mod, which Bazel otherwise
// reports only when someone runs it. Fix with
// `go test ./tools/repocheck -run UseRepo -update`.
func TestUseRepoMatchesGoMod(t *testing.T) {
	root := repoRoot(t)
	m, err := bzlmod.ReadGoMod(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	moduleFile := filepath.Join(root, "MODULE.bazel")
	src, err := os.ReadFile(moduleFile)
	if err != nil {
		t.Fatal(err)
	}
	want := bzlmod.DirectRepos(m)
	if len(want) == 0 {
		t.Fatal("go.mod has no direct requirement and no tool: nothing to compare")
	}
	if *update {
		out, err := bzlmod.SetUseRepos(src, "go_deps", want)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(moduleFile, out, 0o644); err != nil {
			t.Fatal(err)
		}
		src = out
	}
	got, err := bzlmod.UseRepos(src, "go_deps")
	if err != nil {
		t.Fatal(err)
	}
	missing, extra := diffSets(want, got)
	for _, r := range missing {
		t.Errorf("MODULE.bazel: use_repo(go_deps) lacks %q, a direct requirement of go.mod", r)
	}
	for _, r := range extra {
		t.Errorf("MODULE.bazel: use_repo(go_deps) names %q, which is not a direct requirement of go.mod", r)
	}
	if t.Failed() {
		t.Log("fix with: go test ./tools/repocheck -run UseRepo -update")
	}
}

// TestGazelleVersionsAgree checks that `bazel run //:gazelle` and
// tools/ci/gazelle.sh run the same gazelle, so they write the same BUILD
// files.
func TestGazelleVersionsAgree(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "MODULE.bazel"))
	if err != nil {
		t.Fatal(err)
	}
	bazelVersion, err := bzlmod.BazelDepVersion(src, "gazelle")
	if err != nil {
		t.Fatal(err)
	}
	tools, err := bzlmod.ReadGoMod(context.Background(), filepath.Join(root, "tools", "buildtools"))
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string
	for _, r := range tools.Require {
		if r.Path == "github.com/bazelbuild/bazel-gazelle" {
			goVersion = r.Version
		}
	}
	if goVersion == "" {
		t.Fatal("tools/buildtools/go.mod does not require github.com/bazelbuild/bazel-gazelle")
	}
	if "v"+bazelVersion != goVersion {
		t.Errorf("MODULE.bazel has gazelle %s, tools/buildtools/go.mod has %s: keep them equal", bazelVersion, goVersion)
	}
}

// TestGoVersionsAgree checks that Bazel's Go SDK can build what go.mod asks
// for: the same major.minor release, at or above go.mod's go line.
func TestGoVersionsAgree(t *testing.T) {
	root := repoRoot(t)
	m, err := bzlmod.ReadGoMod(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, "MODULE.bazel"))
	if err != nil {
		t.Fatal(err)
	}
	sdk, err := bzlmod.GoSDKVersion(src)
	if err != nil {
		t.Fatal(err)
	}
	if majorMinor(sdk) != majorMinor(m.Go) || !atLeast(sdk, m.Go) {
		t.Errorf("MODULE.bazel downloads Go %s, go.mod says go %s", sdk, m.Go)
	}
}

func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// atLeast compares dotted numeric versions ("1.26.8" >= "1.26.0").
func atLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := 0; i < len(a) || i < len(b); i++ {
		x, y := 0, 0
		if i < len(a) {
			x = atoi(a[i])
		}
		if i < len(b) {
			y = atoi(b[i])
		}
		if x != y {
			return x > y
		}
	}
	return true
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// diffSets returns the elements of want missing from got and the elements
// of got not in want.
func diffSets(want, got []string) (missing, extra []string) {
	in := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, v := range s {
			m[v] = true
		}
		return m
	}
	w, g := in(want), in(got)
	for _, v := range want {
		if !g[v] {
			missing = append(missing, v)
		}
	}
	for _, v := range got {
		if !w[v] {
			extra = append(extra, v)
		}
	}
	return missing, extra
}

func TestVersionHelpers(t *testing.T) {
	for _, tc := range []struct {
		v, min string
		want   bool
	}{
		{"1.26.8", "1.26.0", true}, {"1.26.8", "1.26", true}, {"1.26.0", "1.26.8", false},
		{"1.27.0", "1.26.9", true}, {"1.9", "1.10", false},
	} {
		if got := atLeast(tc.v, tc.min); got != tc.want {
			t.Errorf("atLeast(%q, %q) = %v", tc.v, tc.min, got)
		}
	}
	missing, extra := diffSets([]string{"a", "b"}, []string{"b", "c"})
	if strings.Join(missing, ",") != "a" || strings.Join(extra, ",") != "c" {
		t.Errorf("diffSets = %q, %q", missing, extra)
	}
}

// moduleSchema lists, for the rules_go and gazelle versions MODULE.bazel
// pins (0.65.0 and 0.53.0), the calls a MODULE.bazel may make and the
// keyword arguments each accepts, from their extensions' tag classes and
// Bazel's MODULE.bazel globals. A misspelt tag or attribute fails here
// instead of at the first `bazel build`. Update with the pinned versions.
var moduleSchema = map[string][]string{
	".module":              {"name", "version", "compatibility_level", "repo_name", "bazel_compatibility"},
	".bazel_dep":           {"name", "version", "repo_name", "dev_dependency", "max_compatibility_level"},
	".use_extension":       {"dev_dependency", "isolate"},
	".use_repo":            {},
	".register_toolchains": {"dev_dependency"},
	"go_sdk.download": {
		"name", "goos", "goarch", "sdks", "experiments", "urls", "patches", "patch_strip",
		"strip_prefix", "experimental_build_compiler_from_source", "version",
	},
	"go_sdk.from_file":         {"name", "go_mod", "experiments"},
	"go_sdk.host":              {"name", "version", "experiments"},
	"go_sdk.nogo":              {"nogo", "includes", "excludes"},
	"go_deps.from_file":        {"go_mod", "go_work", "fail_on_version_conflict"},
	"go_deps.config":           {"check_direct_dependencies", "go_env", "go_env_inherit", "debug_mode"},
	"go_deps.module":           {"path", "version", "sum", "indirect", "local_path"},
	"go_deps.gazelle_override": {"path", "directives", "build_file_generation", "build_extra_args"},
	"go_deps.module_override":  {"path", "patches", "patch_strip", "repo_name"},
}

func TestModuleBazelSchema(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "MODULE.bazel"))
	if err != nil {
		t.Fatal(err)
	}
	calls, err := bzlmod.Calls(src)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range calls {
		key := c.Receiver + "." + c.Name
		seen[key] = true
		allowed, ok := moduleSchema[key]
		if !ok {
			t.Errorf("MODULE.bazel:%d: unknown call %s", c.Line, strings.TrimPrefix(key, "."))
			continue
		}
		for _, kw := range c.Keywords {
			if !contains(allowed, kw) {
				t.Errorf("MODULE.bazel:%d: %s has no attribute %q", c.Line, strings.TrimPrefix(key, "."), kw)
			}
		}
	}
	for _, must := range []string{".module", ".bazel_dep", "go_sdk.download", "go_deps.from_file", ".use_repo"} {
		if !seen[must] {
			t.Errorf("MODULE.bazel makes no %s call", strings.TrimPrefix(must, "."))
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
