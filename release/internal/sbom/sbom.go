// Package sbom writes the software bills of materials of a release with
// syft (github.com/anchore/syft, used as a library): one SPDX 2.3 JSON and
// one CycloneDX 1.6 JSON document per image, and checks an SBOM against the
// build information Go embeds in the binary (what `go version -m` prints).
//
// syft puts a random UUID and the current time in each document. Both are
// replaced here by values derived from the image digest and the source's
// commit time, so the SBOMs are as reproducible as the images they describe.
package sbom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/cataloging"
	"github.com/anchore/syft/syft/format/cyclonedxjson"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
)

// Formats and file name suffixes.
const (
	SPDXSuffix       = ".spdx.json"
	CycloneDXSuffix  = ".cdx.json"
	SPDXVersion      = "2.3"
	CycloneDXVersion = "1.6"
)

// goBinaryCataloger is syft's cataloger of Go build information.
const goBinaryCataloger = "go-module-binary-cataloger"

// Subject identifies what an SBOM describes: an image for one platform.
type Subject struct {
	Name     string    // image name, e.g. "auth"
	Platform string    // e.g. "linux/amd64"
	Digest   string    // the image manifest digest, "sha256:…"
	Created  time.Time // SOURCE_DATE_EPOCH
}

// Documents are the encoded SBOMs of one subject.
type Documents struct {
	SPDX      []byte
	CycloneDX []byte
}

// Generate catalogs the binary at binPath (the only software in the image;
// the rest is CA certificates and passwd) and returns both documents,
// normalized.
func Generate(ctx context.Context, binPath string, s Subject) (Documents, error) {
	alias := source.Alias{Name: s.Name, Version: s.Digest}
	src, err := syft.GetSource(ctx, binPath, syft.DefaultGetSourceConfig().WithSources("file").WithAlias(alias))
	if err != nil {
		return Documents{}, fmt.Errorf("sbom %s %s: source: %w", s.Name, s.Platform, err)
	}
	defer src.Close()
	// Only the Go binary cataloger: the file is a static Go binary, and the
	// default set would run OS package catalogers (which need drivers
	// such as sqlite registered) over it for nothing.
	cfg := syft.DefaultCreateSBOMConfig().WithParallelism(1).
		WithCatalogerSelection(cataloging.NewSelectionRequest().WithDefaults(goBinaryCataloger))
	doc, err := syft.CreateSBOM(ctx, src, cfg)
	if err != nil {
		return Documents{}, fmt.Errorf("sbom %s %s: %w", s.Name, s.Platform, err)
	}
	// syft describes the source by its path on this machine (CycloneDX
	// derives metadata.component's bom-ref from it), which differs between
	// checkouts: name it by its file name in the bundle instead.
	fm, ok := doc.Source.Metadata.(source.FileMetadata)
	if !ok {
		return Documents{}, fmt.Errorf("sbom %s %s: source is %T, not a file", s.Name, s.Platform, doc.Source.Metadata)
	}
	fm.Path = filepath.Base(binPath)
	doc.Source.Metadata = fm
	spdxEnc, err := spdxjson.NewFormatEncoderWithConfig(spdxjson.EncoderConfig{Version: SPDXVersion, Pretty: true})
	if err != nil {
		return Documents{}, err
	}
	cdxEnc, err := cyclonedxjson.NewFormatEncoderWithConfig(cyclonedxjson.EncoderConfig{Version: CycloneDXVersion, Pretty: true})
	if err != nil {
		return Documents{}, err
	}
	var out Documents
	if out.SPDX, err = encode(spdxEnc, *doc); err != nil {
		return Documents{}, fmt.Errorf("sbom %s %s: spdx: %w", s.Name, s.Platform, err)
	}
	if out.CycloneDX, err = encode(cdxEnc, *doc); err != nil {
		return Documents{}, fmt.Errorf("sbom %s %s: cyclonedx: %w", s.Name, s.Platform, err)
	}
	if out.SPDX, err = NormalizeSPDX(out.SPDX, s); err != nil {
		return Documents{}, err
	}
	if out.CycloneDX, err = NormalizeCycloneDX(out.CycloneDX, s); err != nil {
		return Documents{}, err
	}
	return out, nil
}

func encode(enc sbom.FormatEncoder, doc sbom.SBOM) ([]byte, error) {
	var b bytes.Buffer
	if err := enc.Encode(&b, doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// uuid derives a version-5-shaped UUID from the subject, in place of
// syft's random one.
func uuid(s Subject, kind string) string {
	h := sha256.Sum256([]byte("guardyn sbom\x00" + kind + "\x00" + s.Name + "\x00" + s.Platform + "\x00" + s.Digest))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// DocumentName is the name both SBOM formats give the subject, so a
// verifier can tell an SBOM that describes another image.
func DocumentName(s Subject) string { return s.Name + " " + s.Platform + " " + s.Digest }

// NormalizeSPDX replaces the document's namespace UUID, name and creation
// time with values derived from s.
func NormalizeSPDX(doc []byte, s Subject) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("sbom %s: spdx: %w", s.Name, err)
	}
	m["name"] = DocumentName(s)
	m["documentNamespace"] = "https://guardyn.github.io/spdx/" + s.Name + "/" + uuid(s, "spdx")
	ci, _ := m["creationInfo"].(map[string]any)
	if ci == nil {
		return nil, fmt.Errorf("sbom %s: spdx: no creationInfo", s.Name)
	}
	ci["created"] = s.Created.UTC().Format(time.RFC3339)
	return marshal(m)
}

// NormalizeCycloneDX replaces the serial number and timestamp and names the
// subject in metadata.component.
func NormalizeCycloneDX(doc []byte, s Subject) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("sbom %s: cyclonedx: %w", s.Name, err)
	}
	m["serialNumber"] = "urn:uuid:" + uuid(s, "cyclonedx")
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		return nil, fmt.Errorf("sbom %s: cyclonedx: no metadata", s.Name)
	}
	md["timestamp"] = s.Created.UTC().Format(time.RFC3339)
	comp, _ := md["component"].(map[string]any)
	if comp == nil {
		comp = map[string]any{"type": "container"}
		md["component"] = comp
	}
	comp["name"] = DocumentName(s)
	return marshal(m)
}

func marshal(m map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

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
