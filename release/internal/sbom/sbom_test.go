package sbom

import (
	"strings"
	"testing"
	"time"

	"github.com/guardyn/guardyn/release/internal/sbomcheck"
)

var subject = sbomcheck.Subject{Name: "auth", Platform: "linux/amd64", Digest: "sha256:" + strings.Repeat("ab", 32), Created: time.Unix(1765000000, 0)}

const spdxDoc = `{"spdxVersion":"SPDX-2.3","name":"/tmp/x","documentNamespace":"https://anchore.com/syft/file/x-1234","creationInfo":{"created":"2026-12-07T10:00:00Z"},
"packages":[{"name":"github.com/guardyn/guardyn","externalRefs":[{"referenceType":"purl","referenceLocator":"pkg:golang/github.com/guardyn/guardyn@v0.3.0"}]}]}`

func TestNormalizeSPDX(t *testing.T) {
	a, err := NormalizeSPDX([]byte(spdxDoc), subject)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NormalizeSPDX([]byte(strings.Replace(spdxDoc, "x-1234", "x-9999", 1)), subject)
	if string(a) != string(b) {
		t.Fatal("normalized documents with different random namespaces differ")
	}
	if !sbomcheck.Describes(a, subject) || strings.Contains(string(a), "2026-12-07T10:00:00Z") {
		t.Fatalf("not normalized: %s", a)
	}
	other := subject
	other.Platform = "linux/arm64"
	if sbomcheck.Describes(a, other) {
		t.Fatal("describes another subject")
	}
}
