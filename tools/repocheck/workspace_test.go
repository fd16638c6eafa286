package repocheck

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/tools/repocheck/bzlmod"
)

// TestWorkspaceUsesModules checks that go.work ties the product to the
// build tools module and names only directories that hold a module.
// release/ joins only if TestWorkspaceKeepsProductVersions still passes
// with it: its SBOM and signing libraries require newer versions of shared
// dependencies than the product uses.
func TestWorkspaceUsesModules(t *testing.T) {
	root := repoRoot(t)
	out := goCmd(t, root, []string{"GOWORK=" + filepath.Join(root, "go.work")}, "work", "edit", "-json")
	var work struct{ Use []struct{ DiskPath string } }
	if err := json.Unmarshal(out, &work); err != nil {
		t.Fatalf("parsing go work edit -json: %v", err)
	}
	used := map[string]bool{}
	for _, u := range work.Use {
		dir := filepath.Clean(u.DiskPath)
		used[dir] = true
		if _, err := os.Stat(filepath.Join(root, dir, "go.mod")); err != nil {
			t.Errorf("go.work uses %s, which has no go.mod", dir)
		}
	}
	for _, m := range []string{".", "tools/buildtools"} {
		if !used[m] {
			t.Errorf("go.work does not use %s", m)
		}
	}
	// release/ requires newer versions of modules the product shares: in
	// the workspace they would replace the product's. CI tests it with
	// GOWORK=off instead.
	if used["release"] {
		t.Error("go.work uses release/, whose requirements would change the product's build; test it with `cd release && GOWORK=off go test ./...`")
	}
}

// TestWorkspaceKeepsProductVersions checks that building the product in
// workspace mode links the same module versions as building it alone: a
// tool module requiring a newer version of a shared dependency would
// otherwise silently change the product's bytes.
func TestWorkspaceKeepsProductVersions(t *testing.T) {
	root := repoRoot(t)
	list := []string{"list", "-e", "-deps", "-f", "{{with .Module}}{{.Path}} {{.Version}}{{end}}", "./..."}
	alone := moduleSet(goCmd(t, root, productEnv, list...))
	workspace := moduleSet(goCmd(t, root, workspaceEnv(root), list...))
	if len(alone) < 2 {
		t.Fatalf("the product links %d modules; expected its own and its dependencies", len(alone))
	}
	missing, extra := diffSets(alone, workspace)
	for _, m := range missing {
		t.Errorf("the product links %s alone but not in workspace mode", m)
	}
	for _, m := range extra {
		t.Errorf("the product links %s in workspace mode only", m)
	}
}

// TestProductGoModHasNoBuildTools checks that the tools pinned in
// tools/buildtools and the release tooling of release/ stay out of the
// product's go.mod.
func TestProductGoModHasNoBuildTools(t *testing.T) {
	root := repoRoot(t)
	m, err := bzlmod.ReadGoMod(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Require {
		for _, tool := range []string{"github.com/bazelbuild/", "honnef.co/go/tools", "github.com/rhysd/actionlint"} {
			if strings.HasPrefix(r.Path, tool) {
				t.Errorf("go.mod requires %s; build tools belong in tools/buildtools/go.mod", r.Path)
			}
		}
		for _, tool := range []string{"github.com/anchore/", "github.com/sigstore/", "github.com/google/go-containerregistry", "golang.org/x/vuln"} {
			if strings.HasPrefix(r.Path, tool) {
				t.Errorf("go.mod requires %s; release tooling belongs in release/go.mod", r.Path)
			}
		}
	}
}

// workspaceEnv selects the repository's go.work and drops a -mod= flag from
// GOFLAGS, which workspace mode refuses.
func workspaceEnv(root string) []string {
	var flags []string
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if !strings.HasPrefix(f, "-mod=") {
			flags = append(flags, f)
		}
	}
	return []string{"GOWORK=" + filepath.Join(root, "go.work"), "GOFLAGS=" + strings.Join(flags, " ")}
}

func moduleSet(out []byte) []string {
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			seen[line] = true
		}
	}
	var mods []string
	for m := range seen {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	return mods
}
