package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// A Lock pins images by digest. Its JSON is the subset of a release bundle's
// images.json that names each image's index digest:
//
//	{"repository": "ghcr.io/guardyn", "images": [{"name": "auth", "index": "sha256:…"}]}
//
// so a bundle's images.json is read as is (its other fields are ignored).
// With a repository, each entry pins the Guardyn image guardyn/NAME, which
// becomes REPOSITORY/NAME@INDEX. Without one, each entry pins the image whose
// full name (without tag) is NAME: that is the form of the operator's
// third-party lock (cmd/infra images lists what it must pin).
type Lock struct {
	Repository string      `json:"repository"`
	Images     []LockImage `json:"images"`
}

// LockImage is one pinned image.
type LockImage struct {
	Name  string `json:"name"`
	Index string `json:"index"`
}

// ZeroDigest is the placeholder the committed prod overlay pins every image
// to: a valid digest no registry serves, refused by Render and by the policy.
const ZeroDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

var (
	digestRE    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	imageNameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
)

// ParseLock decodes and validates an image lock; errors name the entry.
func ParseLock(data []byte) (*Lock, error) {
	var l Lock
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("image lock: %w", err)
	}
	if len(l.Images) == 0 {
		return nil, fmt.Errorf("image lock: no images")
	}
	if l.Repository != "" && !imageNameRE.MatchString(l.Repository) {
		return nil, fmt.Errorf("image lock: repository %q is not an image repository", l.Repository)
	}
	seen := map[string]bool{}
	for i, im := range l.Images {
		if !imageNameRE.MatchString(im.Name) || strings.Contains(im.Name, "@") {
			return nil, fmt.Errorf("image lock: images[%d]: name %q is not an image name (no tag, no digest)", i, im.Name)
		}
		if !digestRE.MatchString(im.Index) {
			return nil, fmt.Errorf("image lock: image %q: index %q is not a sha256 digest", im.Name, im.Index)
		}
		if im.Index == ZeroDigest {
			return nil, fmt.Errorf("image lock: image %q: the all-zero placeholder digest", im.Name)
		}
		if seen[im.Name] {
			return nil, fmt.Errorf("image lock: image %q listed twice", im.Name)
		}
		seen[im.Name] = true
	}
	return &l, nil
}
