package ociimage

import (
	"archive/tar"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var (
	epoch = time.Unix(1765000000, 0)
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}
)

func digest(t *testing.T, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestImageIsReproducible(t *testing.T) {
	a, err := Image("auth", []byte("binary"), nil, amd64, epoch, "v1.0.0", "abc")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Image("auth", []byte("binary"), nil, amd64, epoch.In(time.FixedZone("x", 3600)), "v1.0.0", "abc")
	if digest(t, a) != digest(t, b) {
		t.Fatal("the same inputs gave two image digests")
	}
	for _, c := range []struct {
		what string
		img  func() (v1.Image, error)
	}{
		{"binary", func() (v1.Image, error) { return Image("auth", []byte("binarY"), nil, amd64, epoch, "v1.0.0", "abc") }},
		{"time", func() (v1.Image, error) {
			return Image("auth", []byte("binary"), nil, amd64, epoch.Add(time.Second), "v1.0.0", "abc")
		}},
		{"platform", func() (v1.Image, error) { return Image("auth", []byte("binary"), nil, arm64, epoch, "v1.0.0", "abc") }},
	} {
		img, err := c.img()
		if err != nil {
			t.Fatal(err)
		}
		if digest(t, img) == digest(t, a) {
			t.Errorf("another %s gave the same digest", c.what)
		}
	}
}

func TestImageContents(t *testing.T) {
	img, err := Image("auth", []byte("binary"), nil, arm64, epoch, "v1.0.0", "abc")
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.OS != "linux" || cf.Architecture != "arm64" || !cf.Created.Time.Equal(epoch) {
		t.Fatalf("config: user %q, %s/%s, created %v", cf.Config.User, cf.OS, cf.Architecture, cf.Created)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/usr/local/bin/auth" {
		t.Fatalf("entrypoint %v", cf.Config.Entrypoint)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, epoch)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	if string(files["usr/local/bin/auth"]) != "binary" {
		t.Error("the binary is not at /usr/local/bin/auth")
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("passwd: %q", files["etc/passwd"])
	}
	n := 0
	rest := files["etc/ssl/certs/ca-certificates.crt"]
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			t.Fatalf("CA bundle: %v", err)
		}
		n++
	}
	if n < 100 {
		t.Fatalf("CA bundle has %d certificates", n)
	}
}

// TestLayoutAndPush writes a two-platform index to an OCI layout, reads it
// back, pushes it to a registry on 127.0.0.1 and pulls it by digest.
func TestLayoutAndPush(t *testing.T) {
	imgs := map[string]v1.Image{}
	for _, p := range []v1.Platform{amd64, arm64} {
		img, err := Image("auth", []byte("binary for "+p.Architecture), nil, p, epoch, "v1.0.0", "abc")
		if err != nil {
			t.Fatal(err)
		}
		imgs[p.OS+"/"+p.Architecture] = img
	}
	idx := Index(imgs, []v1.Platform{amd64, arm64}, map[string]string{"org.opencontainers.image.version": "v1.0.0"})
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Manifests[0].Platform.Architecture != "amd64" || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("index manifests: %+v", im.Manifests)
	}
	dir := t.TempDir()
	if err := WriteLayout(dir, map[string]v1.ImageIndex{"auth": idx}); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, back["auth"]) != digest(t, idx) {
		t.Fatal("layout round trip changed the index digest")
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := Push(context.Background(), host+"/guardyn/auth", "v1.0.0", back["auth"])
	if err != nil {
		t.Fatal(err)
	}
	if ref.DigestStr() != digest(t, idx) {
		t.Fatalf("pushed %s, want %s", ref.DigestStr(), digest(t, idx))
	}
	pulled, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	pim, _ := pulled.IndexManifest()
	for _, m := range pim.Manifests {
		img, err := pulled.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if cf.Architecture != m.Platform.Architecture {
			t.Errorf("manifest for %s holds %s", m.Platform.Architecture, cf.Architecture)
		}
	}
	tag, _ := name.NewTag(host + "/guardyn/auth:v1.0.0")
	desc, err := remote.Head(tag)
	if err != nil || desc.Digest.String() != ref.DigestStr() {
		t.Fatalf("tag resolves to %v (%v), want %s", desc, err, ref.DigestStr())
	}
}

// An image that serves files (the web app's) carries them, with their
// directories, read-only to its user; the same files give the same digest,
// other files another; a path that is not clean, or that would replace a
// file of the image, is refused.
func TestImageExtraFiles(t *testing.T) {
	app := []File{
		{Name: "usr/local/share/guardyn/web/index.html", Data: []byte("<!doctype html>")},
		{Name: "usr/local/share/guardyn/web/app.3f9a2c1d.wasm.gz", Data: []byte("gz")},
	}
	img, err := Image("guardyn-web", []byte("binary"), app, amd64, epoch, "v1.0.0", "abc")
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	data := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name], data[h.Name] = h, string(b)
	}
	for _, f := range app {
		h := got[f.Name]
		if h == nil || data[f.Name] != string(f.Data) || h.Mode != 0o644 || h.Uid != 0 {
			t.Errorf("%s: header %+v, data %q", f.Name, h, data[f.Name])
		}
	}
	for _, d := range []string{"usr/local/share/", "usr/local/share/guardyn/", "usr/local/share/guardyn/web/"} {
		if h := got[d]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o755 {
			t.Errorf("directory %s: %+v", d, h)
		}
	}
	if data["usr/local/bin/guardyn-web"] != "binary" {
		t.Error("the binary is missing")
	}
	same, _ := Image("guardyn-web", []byte("binary"), []File{app[1], app[0]}, amd64, epoch, "v1.0.0", "abc")
	if digest(t, same) != digest(t, img) {
		t.Error("the same files in another order gave another digest")
	}
	other, _ := Image("guardyn-web", []byte("binary"), []File{app[0], {Name: app[1].Name, Data: []byte("gZ")}}, amd64, epoch, "v1.0.0", "abc")
	if digest(t, other) == digest(t, img) {
		t.Error("another file content gave the same digest")
	}
	for _, bad := range []string{"/etc/x", "../x", "a//b", "etc/passwd", "usr/local/bin/guardyn-web", "usr/local/bin/other", "etc/passwd/x", "etc", ""} {
		if _, err := Image("guardyn-web", []byte("binary"), []File{{Name: bad}}, amd64, epoch, "v1.0.0", "abc"); err == nil {
			t.Errorf("extra file %q accepted", bad)
		}
	}
}
