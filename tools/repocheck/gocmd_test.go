package repocheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot returns the directory of the product module's go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	out := goCmd(t, ".", nil, "env", "GOMOD")
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not inside a module")
	}
	root := filepath.Dir(gomod)
	recordTreeAsInput(t, root)
	return root
}

// recordTreeAsInput lists every directory of the repository from the test
// process. The checks read the tree through go command subprocesses, which
// go test's result cache does not see; a directory listed here is part of
// the cached result's key (names, sizes and mtimes of its entries), so any
// edit, new file or go.mod change reruns the checks instead of replaying an
// old pass.
func recordTreeAsInput(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "bazel-")) {
			return filepath.SkipDir // .git, caches, Bazel output links
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing the repository: %v", err)
	}
}

// productEnv runs the go command on the product module alone: go.work and
// the separate tool modules play no part in what the product imports, and
// GOFLAGS=-mod=mod (which workspace mode rejects) keeps working.
var productEnv = []string{"GOWORK=off"}

// goCmd runs the go command in dir with extra environment settings and
// returns its standard output; a failure ends the test with stderr.
func goCmd(t *testing.T, dir string, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return out
}

// listedPackage is the part of `go list -json` output the checks read.
type listedPackage struct {
	Dir          string
	ImportPath   string
	Name         string
	Doc          string
	Standard     bool
	GoFiles      []string
	CgoFiles     []string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Module       *struct {
		Path    string
		Version string
	}
	Error *struct{ Err string }
}

// goList runs `go list -e -json` with args in the product module and decodes
// the stream of packages. Packages with errors are kept (half-written code
// elsewhere in the tree must not hide the rules from the rest); their
// errors are logged.
func goList(t *testing.T, root string, args ...string) []listedPackage {
	t.Helper()
	out := goCmd(t, root, productEnv, append([]string{"list", "-e", "-json"}, args...)...)
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.Error != nil {
			t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// standardPackages returns the import paths of the standard library of the
// go command in use.
func standardPackages(t *testing.T) map[string]bool {
	t.Helper()
	out := goCmd(t, ".", productEnv, "list", "std")
	std := map[string]bool{"C": true, "unsafe": true}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		std[sc.Text()] = true
	}
	if len(std) < 100 {
		t.Fatalf("go list std returned %d packages", len(std))
	}
	return std
}
