package deploycheck

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

const repo = "ghcr.io/guardyn"

var index = map[string]string{repo + "/auth": digest("auth"), repo + "/guardyn-server": digest("guardyn-server")}

func TestImages(t *testing.T) {
	auth := repo + "/auth@" + digest("auth")
	cases := []struct {
		name, yaml, want string
	}{
		{"pinned", "containers:\n- image: " + auth + "\n- image: docker.io/library/nats:2.15.2-alpine\n", ""},
		{"quoted", `image: "` + auth + `"`, ""},
		{"another digest", "image: " + repo + "/auth@" + digest("messaging"), "images.json says"},
		{"a tag", "image: " + repo + "/auth:v0.3.0", "not pinned by digest"},
		{"not in the bundle", "image: " + repo + "/billing@" + digest("billing"), "not in images.json"},
		{"on the next line", "spec:\n  image:\n    " + repo + "/auth:v1\n", "not pinned by digest"},
		{"flow style", "containers: [{name: a, image: '" + repo + "/auth:v1'}]", "not pinned by digest"},
		{"an anchor elsewhere", "x: &a " + repo + "/auth:v1\n---\ny: 1\n", ""},
		{"through an alias", "x: &a " + repo + "/auth:v1\nc: {image: *a}\n", "not pinned by digest"},
		{"not YAML", "image: [unclosed", "not YAML"},
		{"UTF-16", "\xfe\xff0\nimage: " + repo + "/auth@" + digest("messaging") + "\n", "not UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Images([]byte(c.yaml), repo, index, "images.json")
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

// FuzzImages: verify reads k8s/*.yaml from an untrusted bundle; whatever
// the bytes, the check neither panics nor accepts a Guardyn image pinned to
// a digest images.json does not give it.
func FuzzImages(f *testing.F) {
	f.Add([]byte("image: " + repo + "/auth@" + digest("auth")))
	f.Add([]byte("- image: '" + repo + "/auth:v1'\n- image: docker.io/library/nats:2\n"))
	f.Add([]byte("a:\n  image:\n    " + repo + "/x\n---\nb: [{image: *x}]"))
	bad := repo + "/auth@" + digest("not auth")
	f.Fuzz(func(t *testing.T, yaml []byte) {
		Images(yaml, repo, index, "images.json")
		withBad := append(append([]byte{}, yaml...), []byte("\nimage: "+bad+"\n")...)
		if len(Images(withBad, repo, index, "images.json")) == 0 {
			t.Fatalf("a wrong digest for auth passed after %q", yaml)
		}
	})
}
