// Package sbomcheck checks a release's SBOMs against its binaries: that an
// SBOM names the image it sits beside, and that it lists every Go module the
// binary's embedded build information lists (what `go version -m` prints).
// SBOMs in a bundle are untrusted bytes. The checks use only the standard
// library and live apart from package sbom (which writes SBOMs with syft) so
// that their fuzz target's instrumented build does not compile syft and its
// dependencies (cgo zstd among them): minutes of CI per run.
package sbomcheck

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Subject identifies what an SBOM describes: an image for one platform.
type Subject struct {
	Name     string    // image name, e.g. "auth"
	Platform string    // e.g. "linux/amd64"
	Digest   string    // the image manifest digest, "sha256:…"
	Created  time.Time // SOURCE_DATE_EPOCH
}

// DocumentName is the name both SBOM formats give the subject, so a
// verifier can tell an SBOM that describes another image.
func DocumentName(s Subject) string { return s.Name + " " + s.Platform + " " + s.Digest }

// Module is a Go module and version.
type Module struct{ Path, Version string }

// BinaryModules returns the main module and every dependency the binary's
// embedded build information lists (what `go version -m` prints), with
// replacements resolved.
func BinaryModules(r io.ReaderAt) (main Module, deps []Module, err error) {
	bi, err := buildinfo.Read(r)
	if err != nil {
		return Module{}, nil, fmt.Errorf("reading Go build info: %w", err)
	}
	main = Module{bi.Main.Path, bi.Main.Version}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		deps = append(deps, Module{d.Path, d.Version})
	}
	return main, deps, nil
}

// purlModules returns the Go modules an SBOM lists as pkg:golang package
// URLs (both formats carry them), path → versions.
func purlModules(doc []byte) (map[string][]string, error) {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "purl" || k == "referenceLocator") && strings.HasPrefix(s, "pkg:golang/") {
					p := strings.TrimPrefix(s, "pkg:golang/")
					if i := strings.IndexAny(p, "?#"); i >= 0 {
						p = p[:i]
					}
					if at := strings.LastIndex(p, "@"); at >= 0 {
						path, ver := unescape(p[:at]), unescape(p[at+1:])
						out[path] = append(out[path], ver)
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out, nil
}

func unescape(s string) string {
	r := strings.NewReplacer("%21", "!", "%2B", "+", "%2b", "+", "%40", "@")
	return r.Replace(s)
}

// Missing returns every module of the binary's build information that doc
// (SPDX or CycloneDX JSON) does not list with the same version; the main
// module's version may also be mainVersion (syft reads the release stamp).
// Empty means complete.
func Missing(doc []byte, main Module, deps []Module, mainVersion string) ([]string, error) {
	listed, err := purlModules(doc)
	if err != nil {
		return nil, fmt.Errorf("parsing sbom: %w", err)
	}
	if len(listed) == 0 {
		return nil, fmt.Errorf("sbom lists no Go modules")
	}
	has := func(path string, versions ...string) bool {
		for _, got := range listed[path] {
			for _, want := range versions {
				if got == want {
					return true
				}
			}
		}
		return false
	}
	var missing []string
	// syft lists no package for a main module without a version, which is
	// every release binary's ("(devel)": -buildvcs=false); it is the
	// bundle's own source, named by the provenance instead.
	if main.Version != "(devel)" && !has(main.Path, main.Version, mainVersion) {
		missing = append(missing, fmt.Sprintf("%s@%s (main module; sbom has %v)", main.Path, main.Version, listed[main.Path]))
	}
	for _, d := range deps {
		if !has(d.Path, d.Version) {
			missing = append(missing, fmt.Sprintf("%s@%s (sbom has %v)", d.Path, d.Version, listed[d.Path]))
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// Describes reports whether doc names subject s (see DocumentName), so an
// SBOM moved to another image's place is caught.
func Describes(doc []byte, s Subject) bool {
	return bytes.Contains(doc, []byte(`"`+DocumentName(s)+`"`))
}
