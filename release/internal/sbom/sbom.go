// Package sbom writes the software bills of materials of a release with
// syft (github.com/anchore/syft, used as a library): one SPDX 2.3 JSON and
// one CycloneDX 1.6 JSON document per image.
//
// syft puts a random UUID and the current time in each document. Both are
// replaced here by values derived from the image digest and the source's
// commit time, so the SBOMs are as reproducible as the images they describe.
// The checks a verifier runs on an SBOM (it names its image, it lists every
// module of the binary's build information) are in package sbomcheck.
package sbom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/cataloging"
	"github.com/anchore/syft/syft/format/cyclonedxjson"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"

	"github.com/guardyn/guardyn/release/internal/sbomcheck"
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

// Documents are the encoded SBOMs of one subject.
type Documents struct {
	SPDX      []byte
	CycloneDX []byte
}

// Generate catalogs the binary at binPath (the only software in the image;
// the rest is CA certificates and passwd) and returns both documents,
// normalized.
func Generate(ctx context.Context, binPath string, s sbomcheck.Subject) (Documents, error) {
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
func uuid(s sbomcheck.Subject, kind string) string {
	h := sha256.Sum256([]byte("guardyn sbom\x00" + kind + "\x00" + s.Name + "\x00" + s.Platform + "\x00" + s.Digest))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// NormalizeSPDX replaces the document's namespace UUID, name and creation
// time with values derived from s.
func NormalizeSPDX(doc []byte, s sbomcheck.Subject) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("sbom %s: spdx: %w", s.Name, err)
	}
	m["name"] = sbomcheck.DocumentName(s)
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
func NormalizeCycloneDX(doc []byte, s sbomcheck.Subject) ([]byte, error) {
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
	comp["name"] = sbomcheck.DocumentName(s)
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
