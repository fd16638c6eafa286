package sbomcheck

import (
	"strings"
	"testing"
	"time"
)

var subject = Subject{Name: "auth", Platform: "linux/amd64", Digest: "sha256:" + strings.Repeat("ab", 32), Created: time.Unix(1765000000, 0)}

const spdxDoc = `{"spdxVersion":"SPDX-2.3","name":"/tmp/x","documentNamespace":"https://anchore.com/syft/file/x-1234","creationInfo":{"created":"2026-12-07T10:00:00Z"},
"packages":[{"name":"github.com/guardyn/guardyn","externalRefs":[{"referenceType":"purl","referenceLocator":"pkg:golang/github.com/guardyn/guardyn@v0.3.0"}]},
{"name":"golang.org/x/text","externalRefs":[{"referenceType":"purl","referenceLocator":"pkg:golang/golang.org/x/text@v0.3.7"}]},
{"name":"github.com/Masterminds/semver/v3","externalRefs":[{"referenceType":"purl","referenceLocator":"pkg:golang/github.com/Masterminds/semver/v3@v3.2.0+incompatible"}]}]}`

func TestMissing(t *testing.T) {
	main := Module{"github.com/guardyn/guardyn", "(devel)"}
	deps := []Module{{"golang.org/x/text", "v0.3.7"}, {"github.com/Masterminds/semver/v3", "v3.2.0+incompatible"}}
	if m, err := Missing([]byte(spdxDoc), main, deps, "v0.3.0"); err != nil || len(m) != 0 {
		t.Fatalf("complete sbom: missing %v, %v", m, err)
	}
	m, err := Missing([]byte(spdxDoc), main, append(deps, Module{"golang.org/x/net", "v0.1.0"}), "v0.3.0")
	if err != nil || len(m) != 1 || !strings.HasPrefix(m[0], "golang.org/x/net@v0.1.0") {
		t.Fatalf("missing = %v, %v; want x/net", m, err)
	}
	m, _ = Missing([]byte(spdxDoc), main, []Module{{"golang.org/x/text", "v0.3.8"}}, "v0.3.0")
	if len(m) != 1 || !strings.HasPrefix(m[0], "golang.org/x/text@v0.3.8") {
		t.Fatalf("a module listed at another version is not reported: %v", m)
	}
	m, _ = Missing([]byte(spdxDoc), Module{"github.com/guardyn/guardyn", "v1.0.0"}, nil, "v9.9.9")
	if len(m) != 1 {
		t.Fatalf("main module at another version is not reported: %v", m)
	}
	if _, err := Missing([]byte(`{}`), main, deps, "v0.3.0"); err == nil {
		t.Fatal("an sbom without modules passed")
	}
}

func TestDescribes(t *testing.T) {
	doc := []byte(`{"name":"` + DocumentName(subject) + `"}`)
	if !Describes(doc, subject) {
		t.Fatalf("%s does not describe %v", doc, subject)
	}
	other := subject
	other.Digest = "sha256:" + strings.Repeat("cd", 32)
	if Describes(doc, other) {
		t.Fatal("describes an image of another digest")
	}
}

// FuzzMissing: SBOMs in a bundle are untrusted; any bytes give an answer
// or an error, never a panic.
func FuzzMissing(f *testing.F) {
	f.Add([]byte(spdxDoc))
	f.Add([]byte(`{"components":[{"purl":"pkg:golang/a@v1?x=y"}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		Missing(in, Module{"a", "v1"}, []Module{{"b", "v2"}}, "v1")
		Describes(in, subject)
	})
}
