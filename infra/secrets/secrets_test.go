package secrets

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/guardyn/guardyn/infra/secrets/sealcheck"
)

const plainSecret = `apiVersion: v1
kind: Secret
metadata:
  name: grafana-admin
  namespace: observability
type: Opaque
stringData:
  password: correct horse battery staple
`

func TestSealOpen(t *testing.T) {
	id, rcpt, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal([]byte(plainSecret), rcpt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("horse")) {
		t.Fatal("the sealed file carries the password in clear")
	}
	if !bytes.Contains(sealed, []byte("name: grafana-admin")) {
		t.Fatal("the sealed file hides which Secret it is: only data and stringData are encrypted")
	}
	if err := sealcheck.Check(sealed); err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(id)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := o.Open("x", sealed)
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := yaml.Unmarshal(plain, &got); err != nil {
		t.Fatal(err)
	}
	yaml.Unmarshal([]byte(plainSecret), &want)
	if got["stringData"].(map[string]any)["password"] != want["stringData"].(map[string]any)["password"] {
		t.Fatalf("opened %s", plain)
	}

	// Another key cannot open it.
	other, _, _ := GenerateIdentity()
	o2, _ := NewOpener(other)
	if _, err := o2.Open("x", sealed); err == nil || !strings.Contains(err.Error(), "no age identity opens it") {
		t.Fatalf("other key: err = %v", err)
	}
	// A changed value fails the MAC (or the value's own tag).
	tampered := bytes.Replace(sealed, []byte("name: grafana-admin"), []byte("name: grafana-admins"), 1)
	if _, err := o.Open("x", tampered); err == nil || !strings.Contains(err.Error(), "MAC mismatch") {
		t.Fatalf("tampered metadata: err = %v", err)
	}
}

func TestCheckSealedRefusesClear(t *testing.T) {
	_, rcpt, _ := GenerateIdentity()
	sealed, err := Seal([]byte(plainSecret), rcpt)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	yaml.Unmarshal(sealed, &doc)
	doc["stringData"].(map[string]any)["extra"] = "in clear"
	withClear, _ := yaml.Marshal(doc)
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"plain Secret":    {[]byte(plainSecret), "no sops section (a Secret in clear)"},
		"one value clear": {withClear, "stringData.extra is in clear"},
		"not YAML":        {[]byte("\t: ["), "not YAML"},
	} {
		if err := sealcheck.Check(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := Seal(sealed, rcpt); err == nil {
		t.Error("sealed a sealed file again")
	}
	if _, err := Seal([]byte("apiVersion: v1\nkind: ConfigMap\n"), rcpt); err == nil {
		t.Error("sealed a ConfigMap")
	}
}

// TestLocalSecretsOpenWithTestKey: the committed local secrets open with the
// documented test key (infra/k8s/secrets/local/age-test-key.txt).
func TestLocalSecretsOpenWithTestKey(t *testing.T) {
	key, err := os.ReadFile("../k8s/secrets/local/age-test-key.txt")
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(string(key))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../k8s/secrets/local/*.sops.yaml")
	if len(files) == 0 {
		t.Fatal("no sealed local secrets")
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		plain, err := o.Open(filepath.Base(f), data)
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name, Namespace string
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(plain, &s); err != nil || s.Kind != "Secret" || s.Metadata.Namespace == "" {
			t.Fatalf("%s: opened to %s (%v)", f, plain, err)
		}
	}
}

// TestNoSecretInClearInRepo scans every YAML and JSON file of the repository
// (as git lists them) for a Secret that is not SOPS-sealed.
func TestNoSecretInClearInRepo(t *testing.T) {
	out, err := exec.Command("git", "-C", "../..", "ls-files", "-co", "--exclude-standard", "*.yaml", "*.yml", "*.json").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := strings.Fields(string(out))
	if len(files) < 20 {
		t.Fatalf("git lists %d YAML/JSON files: not the repository", len(files))
	}
	if bad := clearSecrets(t, "../..", files); len(bad) > 0 {
		t.Fatalf("Secrets in clear: %v", bad)
	}
	// The scan itself finds one.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "leak.yaml"), []byte("---\napiVersion: v1\nkind: ConfigMap\n---\n"+plainSecret), 0o600)
	if bad := clearSecrets(t, dir, []string{"leak.yaml"}); len(bad) != 1 || !strings.Contains(bad[0], "leak.yaml: Secret grafana-admin") {
		t.Fatalf("planted clear Secret: found %v", bad)
	}
}

func clearSecrets(t *testing.T, root string, files []string) []string {
	t.Helper()
	var bad []string
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // listed but deleted in the worktree
		}
		if !bytes.Contains(data, []byte("Secret")) {
			continue
		}
		for _, doc := range bytes.Split(data, []byte("\n---")) {
			var obj struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if yaml.Unmarshal(doc, &obj) != nil || obj.Kind != "Secret" {
				continue
			}
			if err := sealcheck.Check(doc); err != nil {
				bad = append(bad, f+": Secret "+obj.Metadata.Name+": "+err.Error())
			}
		}
	}
	return bad
}
