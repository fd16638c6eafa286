// Package ociimage packs static Go binaries into minimal OCI images without
// a Dockerfile or a base image from a registry: each image is one layer
// built here from scratch (CA certificates, /etc/passwd and /etc/group
// with a non-root user, the binary, and the files a server serves, such as
// the web app's), with every timestamp fixed to the source's commit time,
// so the same inputs always give the same image digest.
//
// No tzdata: the services log and store times in UTC only.
package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	fspath "io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The non-root user the images run as. 65532 is the "nonroot" user of
// distroless images, so volumes prepared for those work unchanged.
const (
	UID      = 65532
	UserName = "nonroot"
)

// RefNameAnnotation names an image in an OCI layout's index.json.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// CACertificates returns the PEM bundle of Mozilla's root certificates from
// golang.org/x/crypto/x509roots/fallback, whose version go.sum pins, so
// the bundle does not depend on the build machine. Roots with constraints
// PEM cannot express (distrust-after dates) are left out.
func CACertificates() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

type file struct {
	name string
	mode int64
	data []byte
	dir  bool
}

// File is a file an image carries besides its binary: Name is its path in
// the image, relative to the root (usr/local/share/guardyn/web/index.html).
// Files are read-only to the image's user (root owns them, mode 0644).
type File struct {
	Name string
	Data []byte
}

// rootFS lists the files of an image, binary and extra files included, in
// tar order, with every parent directory of an extra file.
func rootFS(binName string, bin []byte, extra []File) ([]file, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", UserName, UID, UID, UserName, UserName)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", UserName, UID)
	fs := []file{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: CACertificates()},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/" + UserName + "/", dir: true, mode: 0o700},
		{name: "tmp/", dir: true, mode: 0o1777},
		{name: "usr/", dir: true, mode: 0o755},
		{name: "usr/local/", dir: true, mode: 0o755},
		{name: "usr/local/bin/", dir: true, mode: 0o755},
		{name: "usr/local/bin/" + binName, mode: 0o755, data: bin},
	}
	seen := map[string]bool{}
	for _, f := range fs {
		seen[f.name] = true
	}
	for _, e := range extra {
		if !fspath.ValidPath(e.Name) || e.Name == "." || strings.HasPrefix(e.Name, "usr/local/bin/") {
			return nil, fmt.Errorf("extra file %q: want a clean relative path outside usr/local/bin", e.Name)
		}
		if seen[e.Name] || seen[e.Name+"/"] {
			return nil, fmt.Errorf("extra file %q: already in the image", e.Name)
		}
		seen[e.Name] = true
		fs = append(fs, file{name: e.Name, mode: 0o644, data: e.Data})
		for d := path.Dir(e.Name); d != "."; d = path.Dir(d) {
			if seen[d] {
				return nil, fmt.Errorf("extra file %q: %s is a file", e.Name, d)
			}
			if !seen[d+"/"] {
				seen[d+"/"] = true
				fs = append(fs, file{name: d + "/", dir: true, mode: 0o755})
			}
		}
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].name < fs[j].name })
	return fs, nil
}

// layerTar writes the image's single layer as an uncompressed tar with
// fixed owners (root, except the user's home) and times.
func layerTar(binName string, bin []byte, extra []File, mtime time.Time) ([]byte, error) {
	files, err := rootFS(binName, bin, extra)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if f.name == "home/"+UserName+"/" {
			h.Uid, h.Gid = UID, UID
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Image builds the image for one platform's binary and the extra files it
// serves (none for most). created is the source's commit time
// (SOURCE_DATE_EPOCH); version and revision become the standard OCI
// annotations and labels.
func Image(binName string, bin []byte, extra []File, platform v1.Platform, created time.Time, version, revision string) (v1.Image, error) {
	created = created.UTC()
	raw, err := layerTar(binName, bin, extra, created)
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", binName, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", binName, err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "guardyn release: " + binName, Comment: comment(extra)},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", binName, err)
	}
	labels := map[string]string{
		"org.opencontainers.image.title":    binName,
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.source":   "https://github.com/guardyn/guardyn",
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Variant = platform.Architecture, platform.OS, platform.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: []string{"/usr/local/bin/" + binName},
		User:       fmt.Sprintf("%d:%d", UID, UID),
		WorkingDir: "/home/" + UserName,
		Env:        []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", binName, err)
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

func comment(extra []File) string {
	if len(extra) == 0 {
		return "scratch + CA certificates + passwd + static binary"
	}
	return fmt.Sprintf("scratch + CA certificates + passwd + static binary + %d files", len(extra))
}

// Index bundles one image per platform into a multi-platform OCI index.
func Index(images map[string]v1.Image, platforms []v1.Platform, annotations map[string]string) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        images[p.OS+"/"+p.Architecture],
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	return mutate.Annotations(idx, annotations).(v1.ImageIndex)
}

// WriteLayout writes the indexes into a new OCI image layout at dir, each
// named by its key in index.json (org.opencontainers.image.ref.name), in
// sorted order so index.json is the same on every run.
func WriteLayout(dir string, indexes map[string]v1.ImageIndex) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	var names []string
	for n := range indexes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := p.AppendIndex(indexes[n], layout.WithAnnotations(map[string]string{RefNameAnnotation: n})); err != nil {
			return fmt.Errorf("oci layout %s: %s: %w", dir, n, err)
		}
	}
	return nil
}

// ReadLayout returns the named indexes of an OCI layout written by
// WriteLayout.
func ReadLayout(dir string) (map[string]v1.ImageIndex, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: index.json: %w", dir, err)
	}
	out := map[string]v1.ImageIndex{}
	for _, d := range im.Manifests {
		n := d.Annotations[RefNameAnnotation]
		if n == "" {
			return nil, fmt.Errorf("oci layout %s: index.json: manifest %s has no %s", dir, d.Digest, RefNameAnnotation)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("oci layout %s: index.json: image %q listed twice", dir, n)
		}
		ii, err := root.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("oci layout %s: %s: %w", dir, n, err)
		}
		out[n] = ii
	}
	return out, nil
}

// Push pushes an index (and its images) to repo (e.g.
// "registry.example.com/guardyn/auth") under tag, and returns the digest
// reference operators deploy by.
func Push(ctx context.Context, repo, tag string, idx v1.ImageIndex, opts ...remote.Option) (name.Digest, error) {
	ref, err := name.NewTag(repo+":"+tag, name.StrictValidation)
	if err != nil {
		return name.Digest{}, fmt.Errorf("push: %w", err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	h, err := idx.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return ref.Context().Digest(h.String()), nil
}
