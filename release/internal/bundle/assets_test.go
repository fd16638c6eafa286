package bundle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/release/internal/gobuild"
)

// writeModule writes a module with a main package gen that writes files the
// way apps/web/build does (-o DIR), and returns its root.
func writeModule(t *testing.T, gen string) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range map[string]string{
		"go.mod":      "module example.org/assets\n\ngo 1.26\n",
		"gen/main.go": gen,
	} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestBuildAssets: the files a target serves are what its build writes,
// named under the target's directory in the image; the provenance records
// the command with the image's directory, not the builder's temporary one;
// a build that fails, writes nothing or writes a link fails the release.
func TestBuildAssets(t *testing.T) {
	const gen = `package main

import (
	"flag"
	"os"
	"path/filepath"
)

func main() {
	out := flag.String("o", "", "")
	flag.Parse()
	os.MkdirAll(filepath.Join(*out, "assets"), 0o755)
	os.WriteFile(filepath.Join(*out, "index.html"), []byte("<!doctype html>"), 0o644)
	os.WriteFile(filepath.Join(*out, "assets", "app.3f9a2c1d.wasm.gz"), []byte("gz"), 0o644)
	if os.Getenv("LINK") != "" {
		os.Symlink("/etc/passwd", filepath.Join(*out, "passwd"))
	}
}
`
	root := writeModule(t, gen)
	tg := gobuild.Target{Name: "web", Image: true, Assets: "./gen", AssetsDir: "usr/local/share/guardyn/web"}
	c, files, err := buildAssets(context.Background(), root, tg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range files {
		got[f.Name] = string(f.Data)
	}
	want := map[string]string{
		"usr/local/share/guardyn/web/index.html":                  "<!doctype html>",
		"usr/local/share/guardyn/web/assets/app.3f9a2c1d.wasm.gz": "gz",
	}
	if len(got) != len(want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if args := strings.Join(c.Args, " "); args != "go run -trimpath -mod=readonly ./gen -o /usr/local/share/guardyn/web" {
		t.Errorf("recorded command %q", args)
	}

	t.Setenv("LINK", "1")
	if _, _, err := buildAssets(context.Background(), root, tg); err == nil || !strings.Contains(err.Error(), "passwd is not a regular file") {
		t.Errorf("a link in the output: %v", err)
	}
	t.Setenv("LINK", "")
	empty := writeModule(t, "package main\n\nimport \"flag\"\n\nfunc main() { flag.String(\"o\", \"\", \"\"); flag.Parse() }\n")
	if _, _, err := buildAssets(context.Background(), empty, tg); err == nil {
		t.Error("a build that writes nothing: no error")
	}
	broken := writeModule(t, "package main\n\nfunc main() { os.Exit(3) }\n")
	if _, _, err := buildAssets(context.Background(), broken, tg); err == nil || !strings.Contains(err.Error(), "building the files web serves") {
		t.Errorf("a build that fails: %v", err)
	}
}
