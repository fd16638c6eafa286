package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/guardyn/guardyn/release/internal/ociimage"
	"github.com/guardyn/guardyn/release/internal/provenance"
	"github.com/guardyn/guardyn/release/internal/sbom"
	"github.com/guardyn/guardyn/release/internal/sbomcheck"
	"github.com/guardyn/guardyn/release/internal/sign"
	"github.com/guardyn/guardyn/release/internal/vuln"
)

// Problem is one failed check: the bundle file it concerns, the check's
// name and what is wrong.
type Problem struct {
	File  string
	Check string
	Err   string
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s: %s", p.File, p.Check, p.Err) }

// Check names, stable for scripts and tests.
const (
	CheckManifestSig = "manifest signature"
	CheckManifest    = "manifest"
	CheckImages      = "images"
	CheckOCI         = "oci layout"
	CheckImageSig    = "image signature"
	CheckSBOM        = "sbom"
	CheckSBOMAttest  = "sbom attestation"
	CheckProvenance  = "provenance"
	CheckVuln        = "vulnerability audit"
	CheckRebuild     = "rebuild"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Rebuild rebuilds the release from the checkout at Source (which must
	// be at the bundle's commit) and compares every digest.
	Rebuild bool
	Source  string
	VulnDB  string
	// Progress receives one line per step; nil: silent.
	Progress func(string)
}

type verifier struct {
	dir      string
	key      *sign.Verifier
	problems []Problem
}

func (v *verifier) fail(file, check string, format string, args ...any) {
	v.problems = append(v.problems, Problem{File: file, Check: check, Err: fmt.Sprintf(format, args...)})
}

func (v *verifier) read(rel string) ([]byte, bool) {
	b, err := os.ReadFile(filepath.Join(v.dir, filepath.FromSlash(rel)))
	if err != nil {
		v.fail(rel, CheckManifest, "%v", err)
		return nil, false
	}
	return b, true
}

// Verify checks a bundle directory offline against the public key and
// returns every problem found (empty: the bundle verifies). The error is
// for a bundle that cannot be checked at all.
func Verify(ctx context.Context, dir string, key *sign.Verifier, opts VerifyOptions) ([]Problem, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a bundle directory", dir)
	}
	v := &verifier{dir: dir, key: key}
	progress := func(s string) {
		if opts.Progress != nil {
			opts.Progress(s)
		}
	}
	progress("manifest")
	m, ok := v.manifest()
	if !ok {
		return v.problems, nil
	}
	var im Images
	if b, ok := v.read(ImagesFile); ok {
		if err := json.Unmarshal(b, &im); err != nil {
			v.fail(ImagesFile, CheckImages, "%v", err)
			return v.problems, nil
		}
	}
	progress("binaries and OCI layout")
	v.binaries(im)
	v.oci(im)
	progress("image signatures")
	v.imageSignatures(im)
	progress("deploy manifests")
	v.deploy(m, im)
	progress("SBOMs")
	v.sboms(ctx, im, m)
	progress("provenance")
	v.provenance(ctx, im, m)
	progress("vulnerability audit")
	v.vuln(im)
	if opts.Rebuild {
		progress("rebuilding from " + opts.Source)
		if err := v.rebuild(ctx, m, opts); err != nil {
			v.fail(".", CheckRebuild, "%v", err)
		}
	}
	sort.SliceStable(v.problems, func(i, j int) bool { return v.problems[i].File < v.problems[j].File })
	return v.problems, nil
}

// manifest checks the manifest's signature and that the directory holds
// exactly the listed files with the listed digests.
func (v *verifier) manifest() (Manifest, bool) {
	var m Manifest
	mb, ok := v.read(ManifestFile)
	if !ok {
		return m, false
	}
	sig, ok := v.read(ManifestSigFile)
	if !ok {
		return m, false
	}
	if err := v.key.VerifyBlob(mb, strings.TrimSpace(string(sig))); err != nil {
		v.fail(ManifestSigFile, CheckManifestSig, "%v", err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		v.fail(ManifestFile, CheckManifest, "%v", err)
		return m, false
	}
	listed := map[string]Entry{}
	for _, e := range m.Files {
		if _, dup := listed[e.Path]; dup {
			v.fail(e.Path, CheckManifest, "listed twice")
		}
		listed[e.Path] = e
	}
	files, err := listFiles(v.dir)
	if err != nil {
		v.fail(".", CheckManifest, "%v", err)
	}
	present := map[string]bool{}
	for _, f := range files {
		present[f] = true
		e, ok := listed[f]
		if !ok {
			v.fail(f, CheckManifest, "file is not in the manifest")
			continue
		}
		sum, n, err := hashFile(filepath.Join(v.dir, filepath.FromSlash(f)))
		if err != nil {
			v.fail(f, CheckManifest, "%v", err)
			continue
		}
		if sum != e.SHA256 || n != e.Size {
			v.fail(f, CheckManifest, "sha256 %s (%d bytes), manifest says %s (%d bytes)", sum, n, e.SHA256, e.Size)
		}
	}
	for _, e := range m.Files {
		if !present[e.Path] {
			v.fail(e.Path, CheckManifest, "listed in the manifest but missing")
		}
	}
	return m, true
}

func (v *verifier) binaries(im Images) {
	for _, b := range im.Binaries {
		sum, _, err := hashFile(filepath.Join(v.dir, filepath.FromSlash(b.Path)))
		if err != nil {
			v.fail(b.Path, CheckImages, "%v", err)
			continue
		}
		if sum != b.SHA256 {
			v.fail(b.Path, CheckImages, "sha256 %s, images.json says %s", sum, b.SHA256)
		}
	}
}

// oci checks every blob's content against its name, and that each image
// in images.json is in the layout and packs exactly its bundle binary.
func (v *verifier) oci(im Images) {
	if len(im.Images) == 0 {
		return
	}
	blobs := filepath.Join(v.dir, "oci", "blobs", "sha256")
	entries, err := os.ReadDir(blobs)
	if err != nil {
		v.fail("oci", CheckOCI, "%v", err)
		return
	}
	for _, e := range entries {
		rel := "oci/blobs/sha256/" + e.Name()
		sum, _, err := hashFile(filepath.Join(blobs, e.Name()))
		if err != nil {
			v.fail(rel, CheckOCI, "%v", err)
		} else if sum != e.Name() {
			v.fail(rel, CheckOCI, "content has sha256 %s: the blob was changed", sum)
		}
	}
	indexes, err := readLayout(filepath.Join(v.dir, "oci"))
	if err != nil {
		v.fail("oci/index.json", CheckOCI, "%v", err)
		return
	}
	for _, i := range im.Images {
		idx, ok := indexes[i.Name]
		if !ok {
			v.fail("oci/index.json", CheckOCI, "image %s is not in the layout", i.Name)
			continue
		}
		d, err := idx.Digest()
		if err != nil || d.String() != i.Index {
			v.fail("oci/index.json", CheckOCI, "image %s has index %s, images.json says %s", i.Name, d, i.Index)
			continue
		}
		for _, m := range i.Manifests {
			h, err := v1.NewHash(m.Digest)
			if err != nil {
				v.fail(ImagesFile, CheckImages, "%s: %v", i.Name, err)
				continue
			}
			img, err := idx.Image(h)
			if err != nil {
				v.fail("oci/blobs/sha256/"+h.Hex, CheckOCI, "image %s %s: %v", i.Name, m.Platform, err)
				continue
			}
			want, ok := v.read(m.Binary)
			if !ok {
				continue
			}
			got, err := imageFile(img, "usr/local/bin/"+i.Name)
			if err != nil {
				v.fail("oci/blobs/sha256/"+h.Hex, CheckOCI, "image %s %s: %v", i.Name, m.Platform, err)
				continue
			}
			if !bytes.Equal(got, want) {
				v.fail("oci/blobs/sha256/"+h.Hex, CheckOCI, "image %s %s does not pack %s", i.Name, m.Platform, m.Binary)
			}
		}
	}
}

func readLayout(dir string) (map[string]v1.ImageIndex, error) {
	return ociimage.ReadLayout(dir)
}

// imageFile returns one file's content from an image's layers.
func imageFile(img v1.Image, path string) ([]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for i := len(layers) - 1; i >= 0; i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			return nil, err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rc.Close()
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			if strings.TrimPrefix(h.Name, "/") == path {
				b, err := io.ReadAll(tr)
				rc.Close()
				return b, err
			}
		}
		rc.Close()
	}
	return nil, fmt.Errorf("no %s in the image", path)
}

func (v *verifier) imageSignatures(im Images) {
	check := func(file, digest string) {
		b, ok := v.read(file)
		if !ok {
			return
		}
		var is sign.ImageSignature
		if err := json.Unmarshal(b, &is); err != nil {
			v.fail(file, CheckImageSig, "%v", err)
			return
		}
		if err := v.key.VerifyImage(is, digest); err != nil {
			v.fail(file, CheckImageSig, "%v", err)
		}
	}
	for _, i := range im.Images {
		check("sig/"+i.Name+".json", i.Index)
		for _, m := range i.Manifests {
			check("sig/"+i.Name+"-"+strings.ReplaceAll(m.Platform, "/", "-")+".json", m.Digest)
		}
	}
}

// statement is an in-toto statement with any predicate.
type statement struct {
	Type          string               `json:"_type"`
	Subject       []provenance.Subject `json:"subject"`
	PredicateType string               `json:"predicateType"`
	Predicate     json.RawMessage      `json:"predicate"`
}

func (v *verifier) sboms(ctx context.Context, im Images, m Manifest) {
	for _, b := range im.Binaries {
		base := strings.TrimPrefix(b.Path, "bin/")
		s := sbomcheck.Subject{Name: b.Target, Platform: b.Platform, Digest: b.Subject}
		bin, err := os.Open(filepath.Join(v.dir, filepath.FromSlash(b.Path)))
		if err != nil {
			v.fail(b.Path, CheckSBOM, "%v", err)
			continue
		}
		main, deps, err := sbomcheck.BinaryModules(bin)
		bin.Close()
		if err != nil {
			v.fail(b.Path, CheckSBOM, "%v", err)
			continue
		}
		var spdx []byte
		for _, suffix := range []string{sbom.SPDXSuffix, sbom.CycloneDXSuffix} {
			file := "sbom/" + base + suffix
			doc, ok := v.read(file)
			if !ok {
				continue
			}
			if suffix == sbom.SPDXSuffix {
				spdx = doc
			}
			if !sbomcheck.Describes(doc, s) {
				v.fail(file, CheckSBOM, "does not describe %s (%s %s): it belongs to another image", b.Path, b.Platform, b.Subject)
				continue
			}
			missing, err := sbomcheck.Missing(doc, main, deps, m.Version)
			if err != nil {
				v.fail(file, CheckSBOM, "%v", err)
			} else if len(missing) > 0 {
				v.fail(file, CheckSBOM, "modules of %s missing: %s", b.Path, strings.Join(missing, ", "))
			}
		}
		file := "attest/" + base + ".sbom.intoto.json"
		env, ok := v.read(file)
		if !ok {
			continue
		}
		payload, err := v.key.VerifyAttestation(ctx, env)
		if err != nil {
			v.fail(file, CheckSBOMAttest, "%v", err)
			continue
		}
		var st statement
		if err := json.Unmarshal(payload, &st); err != nil {
			v.fail(file, CheckSBOMAttest, "%v", err)
			continue
		}
		if len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != b.Subject {
			v.fail(file, CheckSBOMAttest, "subject %v is not %s", st.Subject, b.Subject)
		}
		if spdx != nil && !jsonEqual(st.Predicate, spdx) {
			v.fail(file, CheckSBOMAttest, "attested SBOM differs from sbom/%s%s", base, sbom.SPDXSuffix)
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func (v *verifier) provenance(ctx context.Context, im Images, m Manifest) {
	env, ok := v.read(ProvenanceFile)
	if !ok {
		return
	}
	payload, err := v.key.VerifyAttestation(ctx, env)
	if err != nil {
		v.fail(ProvenanceFile, CheckProvenance, "%v", err)
		return
	}
	st, err := provenance.Parse(payload)
	if err != nil {
		v.fail(ProvenanceFile, CheckProvenance, "%v", err)
		return
	}
	key := func(s provenance.Subject) string {
		var ds []string
		for k, d := range s.Digest {
			ds = append(ds, k+":"+d)
		}
		sort.Strings(ds)
		return s.Name + " " + strings.Join(ds, ",")
	}
	want := map[string]bool{}
	for _, s := range provenanceSubjects(im) {
		want[key(s)] = true
	}
	got := map[string]bool{}
	for _, s := range st.Subject {
		got[key(s)] = true
		if !want[key(s)] {
			v.fail(ProvenanceFile, CheckProvenance, "subject %s is not an artifact of this bundle", key(s))
		}
	}
	for k := range want {
		if !got[k] {
			v.fail(ProvenanceFile, CheckProvenance, "artifact %s has no provenance", k)
		}
	}
	ext := st.Predicate.BuildDefinition.ExternalParameters
	if ext.Version != m.Version || ext.Source.Digest["gitCommit"] != m.Commit {
		v.fail(ProvenanceFile, CheckProvenance, "built %s from %s, manifest says %s from %s", ext.Version, ext.Source.Digest["gitCommit"], m.Version, m.Commit)
	}
}

func (v *verifier) vuln(im Images) {
	check := func(file string) {
		b, ok := v.read(file)
		if !ok {
			return
		}
		var r vuln.Report
		if err := json.Unmarshal(b, &r); err != nil || r.Config == nil {
			v.fail(file, CheckVuln, "not a govulncheck report: %v", err)
			return
		}
		if ids := r.Vulnerable(); len(ids) > 0 {
			v.fail(file, CheckVuln, "reachable known vulnerabilities: %s", strings.Join(ids, ", "))
		}
	}
	check("vuln/source.json")
	for _, b := range im.Binaries {
		check("vuln/" + strings.TrimPrefix(b.Path, "bin/") + ".json")
	}
}
