package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeDigest(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

func fakeImages(names ...string) Images {
	im := Images{Repository: "ghcr.io/guardyn"}
	for _, n := range names {
		im.Images = append(im.Images, Image{Name: n, Index: fakeDigest(n)})
	}
	return im
}

// TestCheckDeployImages: the adapter hands images.json to deploycheck,
// whose own tests cover the YAML forms.
func TestCheckDeployImages(t *testing.T) {
	im := fakeImages("auth", "guardyn-server")
	good := []byte("image: ghcr.io/guardyn/auth@" + fakeDigest("auth"))
	if p := checkDeployImages(good, im); len(p) != 0 {
		t.Fatalf("the bundle's own digest: %q", p)
	}
	bad := []byte("image: ghcr.io/guardyn/auth@" + fakeDigest("messaging"))
	if p := checkDeployImages(bad, im); len(p) != 1 || !strings.Contains(p[0], "images.json says "+fakeDigest("auth")) {
		t.Fatalf("another digest: %q", p)
	}
}

// TestRenderOverlays renders both overlays of this checkout's infra/k8s
// with the bundle's images (synthetic digests here; the whole release in
// TestReleaseIsReproducible renders local with real ones): every Guardyn
// image pinned to its index digest, prod under the given domain with the
// operator's lock kept beside it.
func TestRenderOverlays(t *testing.T) {
	dir := t.TempDir()
	im := fakeImages("auth", "messaging", "media", "presence", "notification", "guardyn-server", "guardyn-web")
	if err := writeJSON(filepath.Join(dir, ImagesFile), im); err != nil {
		t.Fatal(err)
	}
	type lockImage struct {
		Name  string `json:"name"`
		Index string `json:"index"`
	}
	var lock struct {
		Images []lockImage `json:"images"`
	}
	for _, n := range []string{"docker.io/envoyproxy/envoy", "docker.io/grafana/grafana", "docker.io/grafana/loki",
		"docker.io/grafana/tempo", "docker.io/library/nats", "docker.io/pingcap/pd", "docker.io/pingcap/tikv",
		"docker.io/prom/prometheus", "docker.io/scylladb/scylla"} {
		lock.Images = append(lock.Images, lockImage{n, fakeDigest(n)})
	}
	lockPath := filepath.Join(t.TempDir(), "lock.json")
	b, _ := json.Marshal(lock)
	if err := os.WriteFile(lockPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := &Options{Domain: "chat.example.org", ThirdPartyLock: lockPath}
	if err := renderOverlays(context.Background(), opts, Source{Root: repoRoot(t)}, dir, im); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"local", "prod"} {
		y, err := os.ReadFile(filepath.Join(dir, DeployDir, name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if p := checkDeployImages(y, im); len(p) > 0 {
			t.Errorf("%s.yaml: %q", name, p)
		}
		wantImage := "ghcr.io/guardyn/guardyn-server@" + fakeDigest("guardyn-server")
		if name == "prod" {
			wantImage = "ghcr.io/guardyn/messaging@" + fakeDigest("messaging")
			if !strings.Contains(string(y), "chat.example.org") {
				t.Errorf("prod.yaml does not name the domain")
			}
		}
		if !strings.Contains(string(y), wantImage) {
			t.Errorf("%s.yaml does not deploy %s", name, wantImage)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, DeployDir, ThirdPartyLockFile)); err != nil {
		t.Errorf("the lock is not kept for verify --rebuild: %v", err)
	}

	// Without every service among the targets, prod cannot be rendered.
	partial := fakeImages("auth", "guardyn-server", "guardyn-web")
	if err := renderOverlays(context.Background(), opts, Source{Root: repoRoot(t)}, t.TempDir(), partial); err == nil || !strings.Contains(err.Error(), "messaging is not among the targets") {
		t.Fatalf("prod with two targets: %v", err)
	}
}
