package provenance

import (
	"strings"
	"testing"
)

const gosum = `golang.org/x/text v0.3.7 h1:olpwvP2KacW1ZWvsR7uQhoyTYvKAupfQrRGBFM352Gk=
golang.org/x/text v0.3.7/go.mod h1:u+2+/6zg+i71rQMx5EYifcz6MCKuco9NR6JIITiCfzQ=
`

func TestDependencies(t *testing.T) {
	sums, err := GoSum([]byte(gosum))
	if err != nil {
		t.Fatal(err)
	}
	tc := ModuleDescriptor("golang.org/toolchain@v0.0.1-go1.27.3.linux-amd64", "h1:dG9vbGNoYWlu")
	deps, err := Dependencies("abc", tc, []string{"golang.org/x/text@v0.3.7", "golang.org/x/text@v0.3.7"}, sums)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) != 3 || deps[0].Digest["gitCommit"] != "abc" || deps[2].URI != "pkg:golang/golang.org/x/text@v0.3.7" || deps[2].Digest["goModuleH1"] != "olpwvP2KacW1ZWvsR7uQhoyTYvKAupfQrRGBFM352Gk=" {
		t.Fatalf("dependencies: %+v", deps)
	}
	if deps[1].URI != "pkg:golang/golang.org/toolchain@v0.0.1-go1.27.3.linux-amd64" || deps[1].Digest["goModuleH1"] != "dG9vbGNoYWlu" {
		t.Fatalf("toolchain dependency: %+v", deps[1])
	}
	if _, err := Dependencies("abc", tc, []string{"example.com/unsummed@v1.0.0"}, sums); err == nil || !strings.Contains(err.Error(), "not in go.sum") {
		t.Fatalf("a module missing from go.sum: got %v", err)
	}
	if _, err := GoSum([]byte("golang.org/x/text v0.3.7\n")); err == nil {
		t.Fatal("malformed go.sum accepted")
	}
}

func TestMarshalParse(t *testing.T) {
	st := Statement{Subject: []Subject{{Name: "b", Digest: map[string]string{"sha256": "2"}}, {Name: "a", Digest: map[string]string{"sha256": "1"}}}}
	b, err := Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Subject[0].Name != "a" || back.Predicate.BuildDefinition.BuildType != BuildType {
		t.Fatalf("round trip: %+v", back)
	}
	if _, err := Parse([]byte(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v1"}`)); err == nil {
		t.Fatal("a statement of another type parsed")
	}
}

// FuzzParse: provenance and go.sum from a bundle are untrusted; any bytes
// give a statement or an error, never a panic.
func FuzzParse(f *testing.F) {
	b, _ := Marshal(Statement{Subject: []Subject{{Name: "a", Digest: map[string]string{"sha256": "1"}}}})
	f.Add(b)
	f.Add([]byte(gosum))
	f.Add([]byte(`{"_type":1}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if st, err := Parse(in); err == nil && st.Type != StatementType {
			t.Fatalf("parsed a statement of type %q", st.Type)
		}
		GoSum(in)
	})
}
