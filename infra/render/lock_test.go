package render

import (
	"os"
	"strings"
	"testing"
)

func TestParseLockReadsABundle(t *testing.T) {
	data, err := os.ReadFile("../policy/testdata/images.json")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseLock(data)
	if err != nil {
		t.Fatal(err)
	}
	if l.Repository != "registry.example.org/guardyn" || len(l.Images) != 7 {
		t.Fatalf("lock %+v", l)
	}
}

func TestParseLockBadInputs(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, want string }{
		{`{"images": []}`, "no images"},
		{`{"images": [{"name": "auth", "index": "sha256:12"}]}`, `image "auth": index "sha256:12" is not a sha256 digest`},
		{`{"images": [{"name": "auth", "index": "` + ZeroDigest + `"}]}`, `image "auth": the all-zero placeholder digest`},
		{`{"images": [{"name": "Auth:latest", "index": "` + d + `"}]}`, `images[0]: name "Auth:latest" is not an image name`},
		{`{"images": [{"name": "a", "index": "` + d + `"}, {"name": "a", "index": "` + d + `"}]}`, `image "a" listed twice`},
		{`{"repository": "HTTP://x", "images": [{"name": "a", "index": "` + d + `"}]}`, `repository "HTTP://x"`},
		{`[1,2]`, "image lock:"},
	} {
		if _, err := ParseLock([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseLock(f *testing.F) {
	data, _ := os.ReadFile("../policy/testdata/images.json")
	f.Add(data)
	f.Add([]byte(`{"images": [{"name": "docker.io/library/nats", "index": "sha256:` + strings.Repeat("0", 63) + `1"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLock(data)
		if err != nil {
			return
		}
		for _, im := range l.Images {
			if !digestRE.MatchString(im.Index) || im.Index == ZeroDigest || !imageNameRE.MatchString(im.Name) {
				t.Fatalf("accepted %+v", im)
			}
		}
	})
}
