// Package deploycheck checks the Kubernetes manifests of a release bundle
// against the bundle's images: every Guardyn image they name must be one of
// the bundle's, pinned to its index digest. It reads untrusted bytes (an
// auditor's bundle) and has a package of its own so that its fuzz target
// builds without syft and cosign.
package deploycheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Images returns what is wrong with the Guardyn images a rendered overlay
// names: each image under repository must be a key of index (repository +
// "/" + name) and pinned to its value, the image's index digest; imagesFile
// names the bundle file index comes from, for the messages. Third-party images are the
// operator's lock's business (infra's check), not the bundle's. The YAML is
// parsed, not scanned line by line: YAML can put a value on the next line or
// in flow style, and a check a layout can dodge proves nothing.
func Images(doc []byte, repository string, index map[string]string, imagesFile string) []string {
	refs, err := imageRefs(doc)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	seen := map[string]bool{}
	for _, ref := range refs {
		if seen[ref] {
			continue
		}
		seen[ref] = true
		repo, digest, pinned := strings.Cut(ref, "@")
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i] // a tag
		}
		if !strings.HasPrefix(repo, repository+"/") {
			continue
		}
		want, ok := index[repo]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("image %s is not in %s", ref, imagesFile))
		case !pinned:
			problems = append(problems, fmt.Sprintf("image %s is not pinned by digest", ref))
		case digest != want:
			problems = append(problems, fmt.Sprintf("image %s, %s says %s", ref, imagesFile, want))
		}
	}
	sort.Strings(problems)
	return problems
}

// imageRefs returns the value of every "image" key anywhere in a stream of
// YAML documents.
func imageRefs(doc []byte) ([]string, error) {
	// The YAML decoder honours a UTF-16 byte-order mark and would read the
	// rest as UTF-16, where no "image" key of the UTF-8 text is seen. The
	// renderer writes UTF-8: anything else is refused, not reinterpreted.
	if !utf8.Valid(doc) {
		return nil, errors.New("not YAML: not UTF-8")
	}
	var refs []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if v.Kind == yaml.AliasNode && v.Alias != nil {
					v = v.Alias
				}
				if k.Kind == yaml.ScalarNode && k.Value == "image" && v.Kind == yaml.ScalarNode {
					refs = append(refs, strings.TrimSpace(v.Value))
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return refs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not YAML: %v", err)
		}
		walk(&n)
	}
}
