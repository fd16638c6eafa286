package repocheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientLibraryRunsAsWebAssembly builds every package of the client library for the
// browser (GOOS=js GOARCH=wasm), where the web app runs it: anything OS-specific (files,
// flock, fsync) must stay behind vault.Storage or in a build-tagged file. Then it runs, as
// WebAssembly under Node (tools/ci/setup.sh installs it), the Storage suite on the in-memory
// Storage (the vault's scrypt and XChaCha20-Poly1305 included) and the vault's check that a
// profile directory is refused there. Without Node only the build runs (under CI=true,
// which installs Node, its absence fails the test). A cold build cache pays about 80 s of CPU for the
// standard library and the dependencies once; later runs reuse it.
func TestClientLibraryRunsAsWebAssembly(t *testing.T) {
	root := repoRoot(t)
	env := append(append([]string(nil), productEnv...), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	pkgs := goList(t, root, "./libs/client/...")
	if len(pkgs) < 4 {
		t.Fatalf("go list ./libs/client/... found %d packages", len(pkgs))
	}
	var names []string
	for _, p := range pkgs {
		names = append(names, p.ImportPath)
	}
	goCmd(t, root, env, append([]string{"build"}, names...)...)
	t.Logf("built for js/wasm: %s", strings.Join(names, " "))

	// The build needs only Go; running it needs Node. On a machine with Go alone (the
	// README's promise) the run says it did not happen; CI installs Node and must run it.
	if _, err := exec.LookPath("node"); err != nil {
		msg := "the WebAssembly run DID NOT RUN: node is not on PATH (tools/ci/setup.sh installs the Debian package nodejs)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	goroot := strings.TrimSpace(string(goCmd(t, root, nil, "env", "GOROOT")))
	execWasm := filepath.Join(goroot, "lib", "wasm", "go_js_wasm_exec")
	cmd := exec.Command("go", "test", "-exec", execWasm, "-v",
		"-run", "^(TestMemory|TestDirRefusesWithoutFlock)$", "./libs/client/vault/vaulttest", "./libs/client/vault")
	cmd.Dir, cmd.Env = root, append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	for _, want := range []string{"--- PASS: TestMemory", "--- PASS: TestDirRefusesWithoutFlock"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("WebAssembly run: no %q in\n%s", want, out)
		}
	}
}
