package repocheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goLibraryBlock matches one go_library rule of a BUILD file, up to its closing parenthesis at
// the start of a line (gazelle's formatting).
var goLibraryBlock = regexp.MustCompile(`(?ms)^go_library\(\n.*?^\)`)

// TestCryptoTestHelpersTestonly requires testonly = True on every helper package of libs/crypto
// named *test (keystest, mlskeystest...): they derive keys from public labels, so Bazel must
// refuse to link them into anything but a test. Gazelle keeps the attribute, which it does not
// manage.
func TestCryptoTestHelpersTestonly(t *testing.T) {
	root := repoRoot(t)
	files, err := buildFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		dir := filepath.Dir(rel)
		if !strings.HasPrefix(dir, "libs/crypto/") || !strings.HasSuffix(filepath.Base(dir), "test") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		libs := goLibraryBlock.FindAll(b, -1)
		if len(libs) == 0 {
			t.Errorf("%s: no go_library rule found", rel)
		}
		for _, lib := range libs {
			checked++
			if !strings.Contains(string(lib), "\n    testonly = True,\n") {
				t.Errorf("%s: go_library without testonly = True; its keys are public knowledge", rel)
			}
		}
	}
	if checked < 2 {
		t.Fatalf("checked %d helper libraries, want at least keystest and mlskeystest", checked)
	}
}
