// Package bundle builds and verifies Guardyn release bundles: one directory
// (and a tarball of it) holding the reproducible binaries, an OCI image
// layout with a multi-platform image per server, SPDX and CycloneDX SBOMs,
// cosign signatures, SBOM and SLSA provenance attestations, the
// vulnerability audit, and a signed manifest of every file's digest.
//
// The bundle directory appears only once complete: everything is written
// into a hidden staging directory next to it, which is renamed at the end
// and removed on any failure. See docs/release.md for the layout and for
// what verify checks.
package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/guardyn/guardyn/release/internal/gobuild"
	"github.com/guardyn/guardyn/release/internal/ociimage"
	"github.com/guardyn/guardyn/release/internal/provenance"
	"github.com/guardyn/guardyn/release/internal/sbom"
	"github.com/guardyn/guardyn/release/internal/sbomcheck"
	"github.com/guardyn/guardyn/release/internal/sign"
	"github.com/guardyn/guardyn/release/internal/vuln"
)

// DefaultRepository is the image repository prefix the signatures name.
const DefaultRepository = "ghcr.io/guardyn"

// Options configure a release build.
type Options struct {
	Source     string // a directory inside the product checkout
	Version    string // semver tag, e.g. v0.3.0
	Signer     *sign.Signer
	Out        string   // the directory the bundle directory and tarball go into
	Targets    []string // names of the targets to build; empty: all
	Repository string   // image repository prefix; empty: DefaultRepository
	BuilderID  string   // SLSA builder id; empty: provenance.DefaultBuilderID
	// AllowDirty builds from a checkout with uncommitted changes; refused
	// for a release version (no pre-release suffix), whose bytes must be
	// the tag's.
	AllowDirty bool
	// VulnDB is a govulncheck database directory to use; empty: built from
	// the pinned vulndb module into the user's cache directory.
	VulnDB string
	// Domain, when set, renders the prod overlay into k8s/prod.yaml with
	// this public name; ThirdPartyLock (required with it) pins the images
	// that are not Guardyn's. The local overlay is always rendered.
	Domain         string
	ThirdPartyLock string
	// Progress receives one line per step; nil: silent.
	Progress func(step string)

	// unsigned (verify --rebuild) writes statements instead of signed
	// envelopes and no signatures; Signer is then nil.
	unsigned bool
}

// Result is a finished bundle.
type Result struct {
	Dir     string // the bundle directory
	Tarball string
	Images  Images
}

// Images is images.json: what each image is, by digest.
type Images struct {
	Repository string        `json:"repository"`
	Images     []Image       `json:"images"`
	Binaries   []BinaryEntry `json:"binaries"`
}

// Image is one multi-platform image.
type Image struct {
	Name      string          `json:"name"`
	Index     string          `json:"index"` // the index digest operators deploy by
	Manifests []ImageManifest `json:"manifests"`
}

// ImageManifest is one platform's image.
type ImageManifest struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
	Binary   string `json:"binary"` // the bundle path of the binary it packs
}

// BinaryEntry is one built binary and the SBOM subject it belongs to.
type BinaryEntry struct {
	Path     string `json:"path"`
	Target   string `json:"target"`
	Platform string `json:"platform"`
	SHA256   string `json:"sha256"`
	// Subject is what the binary's SBOM describes: the image manifest
	// digest for a server, the binary's own digest for the CLI.
	Subject string `json:"subject"`
}

func (o *Options) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, args...))
	}
}

// IsRelease reports whether version is a release (no pre-release suffix).
func IsRelease(version string) bool {
	v := strings.SplitN(version, "+", 2)[0]
	return !strings.Contains(v, "-")
}

// Build writes a release bundle for opts. On any error nothing is left in
// opts.Out.
func Build(ctx context.Context, opts Options) (Result, error) {
	if err := gobuild.ValidVersion(opts.Version); err != nil {
		return Result{}, err
	}
	if opts.Signer == nil && !opts.unsigned {
		return Result{}, errors.New("no signing key")
	}
	targets, err := gobuild.Select(opts.Targets)
	if err != nil {
		return Result{}, err
	}
	if opts.Domain != "" && opts.ThirdPartyLock == "" {
		return Result{}, errors.New("a domain renders the prod overlay, which needs a lock of the third-party images (--third-party-lock)")
	}
	if opts.ThirdPartyLock != "" && opts.Domain == "" {
		return Result{}, errors.New("a third-party lock is for the prod overlay, which needs its domain (--domain)")
	}
	if opts.ThirdPartyLock != "" {
		if _, err := os.Stat(opts.ThirdPartyLock); err != nil {
			return Result{}, fmt.Errorf("third-party lock: %w", err)
		}
	}
	if opts.Repository == "" {
		opts.Repository = DefaultRepository
	}
	if opts.BuilderID == "" {
		opts.BuilderID = provenance.DefaultBuilderID
	}
	src, err := ReadSource(ctx, opts.Source)
	if err != nil {
		return Result{}, err
	}
	if src.Dirty {
		if IsRelease(opts.Version) {
			return Result{}, fmt.Errorf("source %s has uncommitted changes: a release (%s) is built from a clean checkout of its tag (commit or stash them; pre-release versions may use --allow-dirty)", src.Root, opts.Version)
		}
		if !opts.AllowDirty {
			return Result{}, fmt.Errorf("source %s has uncommitted changes (use --allow-dirty for a pre-release build)", src.Root)
		}
	}
	final := filepath.Join(opts.Out, DirName(opts.Version))
	tarball := final + ".tar.gz"
	for _, p := range []string{final, tarball} {
		if _, err := os.Lstat(p); err == nil {
			return Result{}, fmt.Errorf("%s already exists; remove it or choose another --out", p)
		}
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return Result{}, err
	}
	stage, err := os.MkdirTemp(opts.Out, "."+DirName(opts.Version)+".partial-")
	if err != nil {
		return Result{}, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(stage)
			os.Remove(tarball)
		}
	}()
	images, err := build(ctx, &opts, src, targets, stage)
	if err != nil {
		return Result{}, err
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return Result{}, err
	}
	if err := os.Rename(stage, final); err != nil {
		return Result{}, err
	}
	opts.progress("tarball %s", filepath.Base(tarball))
	if err := writeTarball(final, tarball, src.Time); err != nil {
		os.RemoveAll(final)
		return Result{}, fmt.Errorf("tarball: %w", err)
	}
	ok = true
	return Result{Dir: final, Tarball: tarball, Images: images}, nil
}

// attest signs an in-toto statement into a DSSE envelope, or returns it
// as is when building unsigned.
func (o *Options) attest(statement []byte) ([]byte, error) {
	if o.unsigned {
		return statement, nil
	}
	return o.Signer.Attest(statement)
}

func sha256File(path string) (string, error) {
	s, _, err := hashFile(path)
	return s, err
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// build writes everything but the final rename into dir.
func build(ctx context.Context, opts *Options, src Source, targets []gobuild.Target, dir string) (Images, error) {
	stamp := gobuild.Stamp{Version: opts.Version, Commit: src.Commit}
	opts.progress("source %s at %s (%s)", src.Root, src.Commit[:12], src.Time.Format("2006-01-02T15:04:05Z"))

	// 1. Binaries.
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return Images{}, err
	}
	n := 0
	bins, err := gobuild.BuildAll(ctx, src.Root, targets, stamp, binDir, func(b gobuild.Binary) {
		n++
		opts.progress("[%d/%d] built bin/%s", n, len(targets)*len(gobuild.Platforms), b.FileName())
	})
	if err != nil {
		return Images{}, err
	}

	// 2. Images.
	out := Images{Repository: opts.Repository}
	indexes := map[string]v1.ImageIndex{}
	subjects := map[string]string{} // binary bundle path → SBOM subject digest
	imageOf := map[string]string{}  // binary bundle path → image name
	var platforms []v1.Platform
	for _, p := range gobuild.Platforms {
		platforms = append(platforms, v1.Platform{OS: p.OS, Architecture: p.Arch})
	}
	var assetCmds []gobuild.Command
	for _, t := range targets {
		if !t.Image {
			continue
		}
		var extra []ociimage.File
		if t.Assets != "" {
			c, files, err := buildAssets(ctx, src.Root, t)
			if err != nil {
				return Images{}, err
			}
			assetCmds = append(assetCmds, c)
			extra = files
			opts.progress("built the %d files %s serves (%s)", len(files), t.Name, t.Assets)
		}
		imgs := map[string]v1.Image{}
		im := Image{Name: t.Name}
		for _, b := range bins {
			if b.Target.Name != t.Name {
				continue
			}
			data, err := os.ReadFile(b.Path)
			if err != nil {
				return Images{}, err
			}
			img, err := ociimage.Image(t.Name, data, extra, v1.Platform{OS: b.Platform.OS, Architecture: b.Platform.Arch}, src.Time, opts.Version, src.Commit)
			if err != nil {
				return Images{}, err
			}
			d, err := img.Digest()
			if err != nil {
				return Images{}, err
			}
			imgs[b.Platform.String()] = img
			rel := relSlash("bin", b.FileName())
			im.Manifests = append(im.Manifests, ImageManifest{Platform: b.Platform.String(), Digest: d.String(), Binary: rel})
			subjects[rel] = d.String()
			imageOf[rel] = t.Name
		}
		idx := ociimage.Index(imgs, platforms, map[string]string{
			"org.opencontainers.image.title":    t.Name,
			"org.opencontainers.image.version":  opts.Version,
			"org.opencontainers.image.revision": src.Commit,
		})
		d, err := idx.Digest()
		if err != nil {
			return Images{}, err
		}
		im.Index = d.String()
		indexes[t.Name] = idx
		out.Images = append(out.Images, im)
		opts.progress("image %s/%s@%s", opts.Repository, t.Name, d)
	}
	if len(indexes) > 0 {
		if err := ociimage.WriteLayout(filepath.Join(dir, "oci"), indexes); err != nil {
			return Images{}, err
		}
	}
	var modules []string
	for _, b := range bins {
		rel := relSlash("bin", b.FileName())
		sum, err := sha256File(b.Path)
		if err != nil {
			return Images{}, err
		}
		if subjects[rel] == "" {
			subjects[rel] = "sha256:" + sum
		}
		out.Binaries = append(out.Binaries, BinaryEntry{Path: rel, Target: b.Target.Name, Platform: b.Platform.String(), SHA256: sum, Subject: subjects[rel]})
		f, err := os.Open(b.Path)
		if err != nil {
			return Images{}, err
		}
		_, deps, err := sbomcheck.BinaryModules(f)
		f.Close()
		if err != nil {
			return Images{}, fmt.Errorf("%s: %w", rel, err)
		}
		for _, d := range deps {
			modules = append(modules, d.Path+"@"+d.Version)
		}
	}
	if err := writeJSON(filepath.Join(dir, ImagesFile), out); err != nil {
		return Images{}, err
	}
	if err := renderOverlays(ctx, opts, src, dir, out); err != nil {
		return Images{}, err
	}

	// 3. SBOMs, and their attestations.
	for _, b := range out.Binaries {
		s := sbomcheck.Subject{Name: b.Target, Platform: b.Platform, Digest: b.Subject, Created: src.Time}
		opts.progress("sbom %s (%s)", strings.TrimPrefix(b.Path, "bin/"), b.Subject)
		docs, err := sbom.Generate(ctx, filepath.Join(dir, filepath.FromSlash(b.Path)), s)
		if err != nil {
			return Images{}, err
		}
		base := filepath.Join(dir, "sbom", strings.TrimPrefix(b.Path, "bin/"))
		if err := writeFile(base+sbom.SPDXSuffix, docs.SPDX); err != nil {
			return Images{}, err
		}
		if err := writeFile(base+sbom.CycloneDXSuffix, docs.CycloneDX); err != nil {
			return Images{}, err
		}
		subjName := b.Path
		if img := imageOf[b.Path]; img != "" {
			subjName = opts.Repository + "/" + img
		}
		st, err := sbomStatement(subjName, b.Subject, docs.SPDX)
		if err != nil {
			return Images{}, err
		}
		env, err := opts.attest(st)
		if err != nil {
			return Images{}, fmt.Errorf("attesting sbom of %s: %w", b.Path, err)
		}
		if err := writeFile(filepath.Join(dir, "attest", strings.TrimPrefix(b.Path, "bin/")+".sbom.intoto.json"), env); err != nil {
			return Images{}, err
		}
	}

	// 4. Image signatures.
	for _, im := range out.Images {
		if opts.unsigned {
			break
		}
		repo, err := name.NewRepository(opts.Repository+"/"+im.Name, name.StrictValidation)
		if err != nil {
			return Images{}, fmt.Errorf("repository: %w", err)
		}
		sigs := map[string]string{im.Name: im.Index}
		for _, m := range im.Manifests {
			sigs[im.Name+"-"+strings.ReplaceAll(m.Platform, "/", "-")] = m.Digest
		}
		for file, digest := range sigs {
			is, err := opts.Signer.SignImage(repo.Digest(digest))
			if err != nil {
				return Images{}, fmt.Errorf("signing %s: %w", file, err)
			}
			if err := writeJSON(filepath.Join(dir, "sig", file+".json"), is); err != nil {
				return Images{}, err
			}
		}
		opts.progress("signed %s/%s@%s and its %d platform images", opts.Repository, im.Name, im.Index, len(im.Manifests))
	}

	// 5. Vulnerability audit.
	db := opts.VulnDB
	if db == "" {
		opts.progress("vulnerability database %s@%s", vuln.DBModule, vuln.DBVersion)
		if db, err = vuln.CachedDB(ctx); err != nil {
			return Images{}, err
		}
	}
	opts.progress("govulncheck source mode on %s with %s (db %s@%s)", src.Root, gobuild.Toolchain, vuln.DBModule, vuln.DBVersion)
	var found []string
	rep, err := vuln.ScanSource(ctx, db, src.Root, gobuild.Toolchain, "./...")
	if err != nil {
		return Images{}, err
	}
	if err := writeJSON(filepath.Join(dir, "vuln", "source.json"), rep); err != nil {
		return Images{}, err
	}
	for _, id := range rep.Vulnerable() {
		found = append(found, "source: "+id)
	}
	for _, b := range out.Binaries {
		opts.progress("govulncheck binary mode on %s", b.Path)
		rep, err := vuln.ScanBinary(ctx, db, gobuild.Toolchain, filepath.Join(dir, filepath.FromSlash(b.Path)))
		if err != nil {
			return Images{}, err
		}
		if err := writeJSON(filepath.Join(dir, "vuln", strings.TrimPrefix(b.Path, "bin/")+".json"), rep); err != nil {
			return Images{}, err
		}
		for _, id := range rep.Vulnerable() {
			found = append(found, b.Path+": "+id)
		}
	}
	if len(found) > 0 {
		return Images{}, fmt.Errorf("vulnerability audit: known vulnerabilities in reachable code:\n  %s", strings.Join(found, "\n  "))
	}

	// 6. Provenance.
	gosum, err := os.ReadFile(filepath.Join(src.Root, "go.sum"))
	if err != nil {
		return Images{}, err
	}
	sums, err := provenance.GoSum(gosum)
	if err != nil {
		return Images{}, err
	}
	goVersion, err := goEnvVersion(ctx, src.Root)
	if err != nil {
		return Images{}, err
	}
	if goVersion != gobuild.Toolchain {
		return Images{}, fmt.Errorf("the go command runs %s with GOTOOLCHAIN=%s", goVersion, gobuild.Toolchain)
	}
	toolchain, err := toolchainDependency(ctx)
	if err != nil {
		return Images{}, err
	}
	deps, err := provenance.Dependencies(src.Commit, toolchain, modules, sums)
	if err != nil {
		return Images{}, err
	}
	st := provenance.Statement{Subject: provenanceSubjects(out)}
	st.Predicate.BuildDefinition.ExternalParameters = provenance.ExternalParameters{
		Source:  provenance.ResourceDescriptor{URI: provenance.SourceURI + "@" + src.Commit, Digest: map[string]string{"gitCommit": src.Commit}},
		Version: opts.Version,
	}
	for _, t := range targets {
		st.Predicate.BuildDefinition.ExternalParameters.Targets = append(st.Predicate.BuildDefinition.ExternalParameters.Targets, t.Name)
	}
	ip := provenance.InternalParameters{SourceDateEpoch: src.Time.Unix(), GoVersion: goVersion}
	for _, b := range bins {
		c := gobuild.Cmd("", b.Target, b.Platform, stamp, relSlash("bin", b.FileName()))
		ip.Commands = append(ip.Commands, provenance.Command{Args: c.Args, Env: c.Env})
	}
	for _, c := range assetCmds {
		ip.Commands = append(ip.Commands, provenance.Command{Args: c.Args, Env: c.Env})
	}
	st.Predicate.BuildDefinition.InternalParameters = ip
	st.Predicate.BuildDefinition.ResolvedDependencies = deps
	st.Predicate.RunDetails.Builder.ID = opts.BuilderID
	stb, err := provenance.Marshal(st)
	if err != nil {
		return Images{}, err
	}
	env, err := opts.attest(stb)
	if err != nil {
		return Images{}, fmt.Errorf("attesting provenance: %w", err)
	}
	if err := writeFile(filepath.Join(dir, filepath.FromSlash(ProvenanceFile)), env); err != nil {
		return Images{}, err
	}
	opts.progress("provenance: %d subjects, %d resolved dependencies", len(st.Subject), len(deps))

	// 7. The manifest, signed.
	mb, err := writeManifest(dir, Manifest{Version: opts.Version, Commit: src.Commit, SourceDateEpoch: src.Time.Unix(), Domain: opts.Domain})
	if err != nil {
		return Images{}, fmt.Errorf("manifest: %w", err)
	}
	if opts.unsigned {
		return out, nil
	}
	sig, err := opts.Signer.SignBlob(mb)
	if err != nil {
		return Images{}, err
	}
	if err := writeFile(filepath.Join(dir, ManifestSigFile), []byte(sig+"\n")); err != nil {
		return Images{}, err
	}
	opts.progress("manifest signed")
	return out, nil
}

// buildAssets runs the product's build of the files t's image serves (the
// web app) into a temporary directory and returns the command, as the
// provenance records it (the output directory named as in the image), and
// the files, named by their path in the image. Only regular files are
// taken: a link or other special file in the output is an error.
func buildAssets(ctx context.Context, root string, t gobuild.Target) (gobuild.Command, []ociimage.File, error) {
	tmp, err := os.MkdirTemp("", "guardyn-assets-")
	if err != nil {
		return gobuild.Command{}, nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "out")
	if err := gobuild.AssetsCmd(root, t, out).Run(ctx); err != nil {
		return gobuild.Command{}, nil, fmt.Errorf("building the files %s serves: %w", t.Name, err)
	}
	var files []ociimage.File
	err = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(out, p)
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", rel)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, ociimage.File{Name: t.AssetsDir + "/" + filepath.ToSlash(rel), Data: b})
		return nil
	})
	if err != nil {
		return gobuild.Command{}, nil, fmt.Errorf("the files %s serves (%s): %w", t.Name, t.Assets, err)
	}
	if len(files) == 0 {
		return gobuild.Command{}, nil, fmt.Errorf("the files %s serves: %s wrote none", t.Name, t.Assets)
	}
	return gobuild.AssetsCmd("", t, "/"+t.AssetsDir), files, nil
}

// provenanceSubjects are the binaries and images (indexes and platform
// manifests), by digest.
func provenanceSubjects(im Images) []provenance.Subject {
	var out []provenance.Subject
	for _, b := range im.Binaries {
		out = append(out, provenance.Subject{Name: b.Path, Digest: map[string]string{"sha256": b.SHA256}})
	}
	for _, i := range im.Images {
		out = append(out, provenance.Subject{Name: im.Repository + "/" + i.Name, Digest: digestSet(i.Index)})
		for _, m := range i.Manifests {
			out = append(out, provenance.Subject{Name: im.Repository + "/" + i.Name + " " + m.Platform, Digest: digestSet(m.Digest)})
		}
	}
	return out
}

func digestSet(d string) map[string]string {
	alg, hex, _ := strings.Cut(d, ":")
	return map[string]string{alg: hex}
}

// SBOMPredicateType is the predicate type of SBOM attestations (SPDX), as
// `cosign attest --type spdxjson` writes it.
const SBOMPredicateType = "https://spdx.dev/Document"

func sbomStatement(subject, digest string, spdx []byte) ([]byte, error) {
	st := struct {
		Type          string               `json:"_type"`
		Subject       []provenance.Subject `json:"subject"`
		PredicateType string               `json:"predicateType"`
		Predicate     json.RawMessage      `json:"predicate"`
	}{provenance.StatementType, []provenance.Subject{{Name: subject, Digest: digestSet(digest)}}, SBOMPredicateType, spdx}
	return json.Marshal(st)
}

// goEnvVersion returns the Go version the release's go commands run.
func goEnvVersion(ctx context.Context, dir string) (string, error) {
	c := gobuild.Command{Dir: dir, Args: []string{"go", "env", "GOVERSION"}, Env: []string{"GOWORK=off", "GOTOOLCHAIN=" + gobuild.Toolchain}}
	return c.Output(ctx)
}

// toolchainDependency names the pinned toolchain's module as this host's
// go command fetched it, with its checksum (the go.sum h1 hash the checksum
// database vouches for), for the provenance.
func toolchainDependency(ctx context.Context) (provenance.ResourceDescriptor, error) {
	mod := gobuild.ToolchainModule(runtime.GOOS, runtime.GOARCH)
	c := gobuild.Command{Dir: os.TempDir(), Args: []string{"go", "mod", "download", "-json", mod}, Env: []string{"GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local"}}
	out, err := c.Output(ctx)
	if err != nil {
		return provenance.ResourceDescriptor{}, fmt.Errorf("toolchain %s: %w", gobuild.Toolchain, err)
	}
	var info struct{ Sum string }
	if err := json.Unmarshal([]byte(out), &info); err != nil || !strings.HasPrefix(info.Sum, "h1:") {
		return provenance.ResourceDescriptor{}, fmt.Errorf("toolchain %s: go mod download gave no h1 checksum: %q", gobuild.Toolchain, out)
	}
	return provenance.ModuleDescriptor(mod, info.Sum), nil
}
