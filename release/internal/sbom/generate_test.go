package sbom

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestGenerateIsReproducible: the same binary, copied to two different
// directories and cataloged at two different times, gives byte-identical
// documents in both formats. syft's random serial number and document
// namespace, its clock and the binary's path on the build machine (the
// CycloneDX metadata.component bom-ref is a hash of it) must all be gone.
func TestGenerateIsReproducible(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	var docs []Documents
	for i := 0; i < 2; i++ {
		if i == 1 {
			// syft's timestamps have a resolution of one second.
			time.Sleep(1100 * time.Millisecond)
		}
		p := filepath.Join(t.TempDir(), "sub", "auth-linux-amd64")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		d, err := Generate(context.Background(), p, subject)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(d.SPDX, []byte(filepath.Dir(p))) || bytes.Contains(d.CycloneDX, []byte(filepath.Dir(p))) {
			t.Errorf("an SBOM names the directory the binary was cataloged in (%s)", filepath.Dir(p))
		}
		docs = append(docs, d)
	}
	for _, f := range []struct {
		name string
		a, b []byte
	}{{"SPDX", docs[0].SPDX, docs[1].SPDX}, {"CycloneDX", docs[0].CycloneDX, docs[1].CycloneDX}} {
		if !bytes.Equal(f.a, f.b) {
			t.Errorf("%s documents of one binary differ:\n%s", f.name, firstDiff(f.a, f.b))
		}
	}
}

// firstDiff returns the first differing line of a and b with its number.
func firstDiff(a, b []byte) string {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := 0; i < len(la) && i < len(lb); i++ {
		if !bytes.Equal(la[i], lb[i]) {
			return "line " + itoa(i+1) + ":\n- " + string(la[i]) + "\n+ " + string(lb[i])
		}
	}
	return "lengths differ: " + itoa(len(la)) + " and " + itoa(len(lb)) + " lines"
}

func itoa(n int) string { return string(strconv.AppendInt(nil, int64(n), 10)) }
