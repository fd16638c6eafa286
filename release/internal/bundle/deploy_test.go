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

func TestCheckDeployImages(t *testing.T) {
	im := fakeImages("auth", "guardyn-server")
	auth := "ghcr.io/guardyn/auth@" + fakeDigest("auth")
	cases := []struct {
		name, yaml, want string
	}{
		{"pinned", "containers:\n- image: " + auth + "\n- image: docker.io/library/nats:2.15.2-alpine\n", ""},
		{"quoted", `image: "` + auth + `"`, ""},
		{"another digest", "image: ghcr.io/guardyn/auth@" + fakeDigest("messaging"), "images.json says"},
		{"a tag", "image: ghcr.io/guardyn/auth:v0.3.0", "not pinned by digest"},
		{"not in the bundle", "image: ghcr.io/guardyn/billing@" + fakeDigest("billing"), "not in images.json"},
		{"on the next line", "spec:\n  image:\n    ghcr.io/guardyn/auth:v1\n", "not pinned by digest"},
		{"flow style", "containers: [{name: a, image: 'ghcr.io/guardyn/auth:v1'}]", "not pinned by digest"},
		{"an alias", "x: &a ghcr.io/guardyn/auth:v1\n---\ny: 1\n", ""},
		{"through an alias", "x: &a ghcr.io/guardyn/auth:v1\nc: {image: *a}\n", "not pinned by digest"},
		{"not YAML", "image: [unclosed", "not YAML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := checkDeployImages([]byte(c.yaml), im)
			if c.want == "" {
				if len(p) != 0 {
					t.Fatalf("problems %q, want none", p)
				}
				return
			}
			if len(p) != 1 || !strings.Contains(p[0], c.want) {
				t.Fatalf("problems %q, want one saying %q", p, c.want)
			}
		})
	}
}

// TestRenderOverlays renders both overlays of this checkout's infra/k8s
// with the bundle's images (synthetic digests here; the whole release in
// TestReleaseIsReproducible renders local with real ones): every Guardyn
// image pinned to its index digest, prod under the given domain with the
// operator's lock kept beside it.
func TestRenderOverlays(t *testing.T) {
	dir := t.TempDir()
	im := fakeImages("auth", "messaging", "media", "presence", "notification", "guardyn-server")
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
	partial := fakeImages("auth", "guardyn-server")
	if err := renderOverlays(context.Background(), opts, Source{Root: repoRoot(t)}, t.TempDir(), partial); err == nil || !strings.Contains(err.Error(), "messaging is not among the targets") {
		t.Fatalf("prod with two targets: %v", err)
	}
}

// FuzzCheckDeployImages: verify reads k8s/*.yaml from an untrusted bundle;
// whatever the bytes, the check neither panics nor accepts a Guardyn image
// pinned to a digest images.json does not give it.
func FuzzCheckDeployImages(f *testing.F) {
	f.Add([]byte("image: ghcr.io/guardyn/auth@" + fakeDigest("auth")))
	f.Add([]byte("- image: 'ghcr.io/guardyn/auth:v1'\n- image: docker.io/library/nats:2\n"))
	f.Add([]byte("a:\n  image:\n    ghcr.io/guardyn/x\n---\nb: [{image: *x}]"))
	im := fakeImages("auth", "guardyn-server")
	bad := "ghcr.io/guardyn/auth@" + fakeDigest("not auth")
	f.Fuzz(func(t *testing.T, yaml []byte) {
		checkDeployImages(yaml, im)
		withBad := append(append([]byte{}, yaml...), []byte("\nimage: "+bad+"\n")...)
		if len(checkDeployImages(withBad, im)) == 0 {
			t.Fatalf("a wrong digest for auth passed after %q", yaml)
		}
	})
}
