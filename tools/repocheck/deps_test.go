package repocheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

const modulePath = "github.com/guardyn/guardyn"

// violation is one import that breaks a dependency rule.
type violation struct {
	from, imp, rule string
}

func (v violation) String() string { return fmt.Sprintf("%s imports %s: %s", v.from, v.imp, v.rule) }

// rel returns the path of an import path inside this module ("libs/kv"), or
// "" for paths outside it.
func rel(imp string) string {
	if imp == modulePath {
		return "."
	}
	r, ok := strings.CutPrefix(imp, modulePath+"/")
	if !ok {
		return ""
	}
	return r
}

// under reports whether the module-relative path p is dir or inside it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// serviceOf returns the service a module-relative path belongs to
// ("services/auth/cmd/auth" -> "auth").
func serviceOf(p string) string {
	if !under(p, "services") {
		return ""
	}
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// importRules checks the one-way dependency rules of the design:
//   - libs/crypto/... imports only the standard library, circl and itself,
//     its tests included (vectors live in testdata/, not in other libraries);
//   - services/X never imports services/Y: services talk through proto/;
//   - nothing under libs/ imports services/ or tools/; only the tests of libs/client may, to
//     run a whole platform (tools/clienttest) against the client, as a real device does.
func importRules(pkgs []listedPackage, std map[string]bool) []violation {
	var vs []violation
	for _, p := range pkgs {
		from := rel(p.ImportPath)
		if from == "" {
			continue
		}
		all := append(append(append([]string(nil), p.Imports...), p.TestImports...), p.XTestImports...)
		if under(from, "libs/crypto") {
			for _, imp := range all {
				r := rel(imp)
				if std[imp] || under(imp, "github.com/cloudflare/circl") || (r != "" && under(r, "libs/crypto")) {
					continue
				}
				vs = append(vs, violation{p.ImportPath, imp, "libs/crypto may import only the standard library, circl and libs/crypto"})
			}
		}
		for _, imp := range all {
			r := rel(imp)
			if r == "" {
				continue
			}
			if s := serviceOf(from); s != "" && serviceOf(r) != "" && serviceOf(r) != s {
				vs = append(vs, violation{p.ImportPath, imp, "services never import each other; use their proto/ API"})
			}
			if under(from, "libs") && (under(r, "services") || under(r, "tools")) && !(under(from, "libs/client") && !slices.Contains(p.Imports, imp)) {
				vs = append(vs, violation{p.ImportPath, imp, "libs/ must not depend on services/ or tools/"})
			}
		}
	}
	return dedupViolations(vs)
}

func dedupViolations(vs []violation) []violation {
	sort.Slice(vs, func(i, j int) bool { return vs[i].String() < vs[j].String() })
	out := vs[:0]
	for i, v := range vs {
		if i == 0 || v != vs[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// heavyModulePrefixes are the release tooling (SBOM, signing) and Kubernetes
// client libraries that belong to the release/ module and infra tooling,
// never in a server binary (hundreds of MB and a large attack surface).
var heavyModulePrefixes = []string{
	"github.com/anchore/",  // syft
	"github.com/sigstore/", // cosign, rekor, fulcio
	"github.com/google/go-containerregistry",
	"k8s.io/",
	"sigs.k8s.io/",
}

// heavyDeps returns the forbidden modules among the modules of deps.
func heavyDeps(deps []listedPackage) []string {
	seen := map[string]bool{}
	for _, p := range deps {
		if p.Module == nil || seen[p.Module.Path] {
			continue
		}
		for _, prefix := range heavyModulePrefixes {
			if strings.HasPrefix(p.Module.Path+"/", prefix) || strings.HasPrefix(p.Module.Path, prefix) {
				seen[p.Module.Path] = true
			}
		}
	}
	var mods []string
	for m := range seen {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	return mods
}

func TestImportRulesCatchViolations(t *testing.T) {
	std := map[string]bool{"crypto/mlkem": true, "fmt": true}
	pkgs := []listedPackage{
		{ImportPath: modulePath + "/libs/crypto/ratchet", Imports: []string{
			"crypto/mlkem", "github.com/cloudflare/circl/kem", modulePath + "/libs/crypto/keys",
			"golang.org/x/crypto/hkdf", modulePath + "/libs/kv",
		}, XTestImports: []string{"golang.org/x/crypto/chacha20poly1305"}},
		{ImportPath: modulePath + "/services/auth", Imports: []string{
			modulePath + "/services/messaging", modulePath + "/libs/kv", modulePath + "/proto/guardyn/messaging/v1",
		}},
		{ImportPath: modulePath + "/services/auth/cmd/auth", Imports: []string{modulePath + "/services/auth"}},
		{ImportPath: modulePath + "/libs/kv", TestImports: []string{modulePath + "/tools/devserver"}},
		{ImportPath: modulePath + "/libs/obs", Imports: []string{"fmt", modulePath + "/services/presence"}},
		{ImportPath: modulePath + "/libs/client", Imports: []string{modulePath + "/tools/devserver/platform"},
			XTestImports: []string{modulePath + "/tools/clienttest", modulePath + "/services/auth"}},
		{ImportPath: modulePath + "/libs/client/vault", TestImports: []string{modulePath + "/tools/clienttest"}},
		{ImportPath: modulePath + "/tools/devserver", Imports: []string{modulePath + "/services/auth", modulePath + "/services/media"}},
	}
	var got []string
	for _, v := range importRules(pkgs, std) {
		got = append(got, v.from+" -> "+v.imp)
	}
	want := []string{
		modulePath + "/libs/client -> " + modulePath + "/tools/devserver/platform",
		modulePath + "/libs/crypto/ratchet -> " + modulePath + "/libs/kv",
		modulePath + "/libs/crypto/ratchet -> golang.org/x/crypto/chacha20poly1305",
		modulePath + "/libs/crypto/ratchet -> golang.org/x/crypto/hkdf",
		modulePath + "/libs/kv -> " + modulePath + "/tools/devserver",
		modulePath + "/libs/obs -> " + modulePath + "/services/presence",
		modulePath + "/services/auth -> " + modulePath + "/services/messaging",
	}
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestHeavyDepsCatchesReleaseTooling(t *testing.T) {
	mod := func(path string) listedPackage {
		return listedPackage{Module: &struct{ Path, Version string }{Path: path}}
	}
	got := heavyDeps([]listedPackage{
		mod("github.com/anchore/syft"), mod("github.com/sigstore/cosign/v2"), mod("k8s.io/client-go"),
		mod("sigs.k8s.io/yaml"), mod("google.golang.org/grpc"), mod("github.com/anchore/syft"),
		{ImportPath: "fmt", Standard: true},
	})
	want := []string{"github.com/anchore/syft", "github.com/sigstore/cosign/v2", "k8s.io/client-go", "sigs.k8s.io/yaml"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("heavyDeps = %q, want %q", got, want)
	}
}

// TestDependencyRules applies the rules to every package of the module as
// the tree stands.
func TestDependencyRules(t *testing.T) {
	root := repoRoot(t)
	pkgs := goList(t, root, "./...")
	if len(pkgs) == 0 {
		t.Fatal("go list ./... found no packages")
	}
	var sawCrypto bool
	for _, p := range pkgs {
		sawCrypto = sawCrypto || under(rel(p.ImportPath), "libs/crypto")
	}
	if !sawCrypto {
		t.Error("no package under libs/crypto: the crypto rule checked nothing")
	}
	for _, v := range importRules(pkgs, standardPackages(t)) {
		t.Error(v)
	}
}

// TestBinariesStayLight checks the dependency closure of the code that ends
// up in server binaries: services/, libs/ and the all-in-one devserver and
// CLI.
func TestBinariesStayLight(t *testing.T) {
	root := repoRoot(t)
	var patterns []string
	for _, p := range goList(t, root, "./services/...", "./libs/...", "./tools/devserver/...", "./apps/...") {
		if p.Error == nil && rel(p.ImportPath) != "" {
			patterns = append(patterns, p.ImportPath)
		}
	}
	if len(patterns) == 0 {
		t.Fatal("no buildable package under services/, libs/, tools/devserver or apps/")
	}
	deps := goList(t, root, append([]string{"-deps"}, patterns...)...)
	if len(deps) < len(patterns) {
		t.Fatalf("go list -deps returned %d packages for %d roots", len(deps), len(patterns))
	}
	for _, m := range heavyDeps(deps) {
		t.Errorf("module %s is in the dependency closure of the server binaries; it belongs in release/ or infra tooling", m)
	}
}
