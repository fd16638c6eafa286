package repocheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs requires a package doc comment on every package of the
// module: "Package <name> ..." for libraries, any sentence for commands.
// Packages made only of generated files are exempt: their generator owns
// the text, and a hand-written doc.go beside them is welcome but optional.
func TestPackageDocs(t *testing.T) {
	root := repoRoot(t)
	pkgs := goList(t, root, "./...")
	checked := 0
	for _, p := range pkgs {
		files := append(append([]string(nil), p.GoFiles...), p.CgoFiles...)
		if len(files) == 0 || rel(p.ImportPath) == "" {
			continue // only tests, or not parseable: nothing shipped to document
		}
		if allGenerated(t, p.Dir, files) {
			continue
		}
		checked++
		if msg := docProblem(p.Name, p.Doc); msg != "" {
			t.Errorf("%s: %s (add a doc.go: one sentence, then a spec or design link)", p.ImportPath, msg)
		}
	}
	if checked == 0 {
		t.Fatal("no hand-written package found to check")
	}
}

// docProblem returns what is wrong with the synopsis of a package's doc
// comment, or "" when nothing is.
func docProblem(name, synopsis string) string {
	switch {
	case strings.TrimSpace(synopsis) == "":
		return "no package doc comment"
	case name != "main" && !strings.HasPrefix(synopsis, "Package "+name+" "):
		return "package doc comment does not start with \"Package " + name + " \""
	}
	return ""
}

func allGenerated(t *testing.T, dir string, files []string) bool {
	t.Helper()
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Logf("parsing %s: %v", name, err)
			return false
		}
		if !ast.IsGenerated(f) {
			return false
		}
	}
	return true
}

func TestDocProblem(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		bad       bool
	}{
		{"ratchet", "Package ratchet implements the Double Ratchet.", false},
		{"main", "Command guardyn runs every service in one process.", false},
		{"ratchet", "", true},
		{"ratchet", "Package rachet implements the Double Ratchet.", true},
		{"ratchet", "Implements the Double Ratchet.", true},
		{"main", "  ", true},
	} {
		if got := docProblem(tc.name, tc.doc); (got != "") != tc.bad {
			t.Errorf("docProblem(%q, %q) = %q, want bad=%v", tc.name, tc.doc, got, tc.bad)
		}
	}
}
