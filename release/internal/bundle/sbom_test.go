package bundle

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"io"
	"log"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/guardyn/guardyn/release/internal/sbom"
	"github.com/guardyn/guardyn/release/internal/sbomcheck"
)

// goVersionM returns the modules `go version -m` prints for a binary: the
// main module and each dependency (a replacement in place of its original).
func goVersionM(t *testing.T, bin string) (sbomcheck.Module, []sbomcheck.Module) {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", bin, err)
	}
	var main sbomcheck.Module
	var deps []sbomcheck.Module
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			main = sbomcheck.Module{Path: f[1], Version: f[2]}
		case len(f) >= 3 && f[0] == "dep":
			deps = append(deps, sbomcheck.Module{Path: f[1], Version: f[2]})
		case len(f) >= 3 && f[0] == "=>":
			deps[len(deps)-1] = sbomcheck.Module{Path: f[1], Version: f[2]}
		}
	}
	if main.Path == "" || len(deps) < 5 {
		t.Fatalf("go version -m %s: main %v, %d deps:\n%s", bin, main, len(deps), out)
	}
	return main, deps
}

// TestSBOMsListEveryModuleOfGoVersionM: for every binary of the release,
// each module `go version -m` lists appears in both of its SBOMs with the
// same version.
func TestSBOMsListEveryModuleOfGoVersionM(t *testing.T) {
	f := release(t)
	for _, b := range f.a.Images.Binaries {
		main, deps := goVersionM(t, filepath.Join(f.a.Dir, b.Path))
		for _, suffix := range []string{sbom.SPDXSuffix, sbom.CycloneDXSuffix} {
			file := filepath.Join(f.a.Dir, "sbom", strings.TrimPrefix(b.Path, "bin/")+suffix)
			doc, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			missing, err := sbomcheck.Missing(doc, main, deps, testVersion)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(missing) > 0 {
				t.Errorf("%s lacks %d of %d modules of %s: %v", filepath.Base(file), len(missing), len(deps)+1, b.Path, missing)
			}
		}
	}
}

// TestPushedImagesVerifyWithCosign pushes the bundle's images to a registry
// on 127.0.0.1 and checks them with cosign's own verification (signature
// and SBOM attestation, key-based, no transparency log).
func TestPushedImagesVerifyWithCosign(t *testing.T) {
	f := release(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	refs, err := Push(context.Background(), f.a.Dir, host+"/guardyn", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != len(f.a.Images.Images) {
		t.Fatalf("pushed %v", refs)
	}
	co := &cosign.CheckOpts{
		SigVerifier: f.verifier.SignatureVerifier(), IgnoreTlog: true, IgnoreSCT: true, Offline: true,
		ClaimVerifier: cosign.SimpleClaimVerifier,
	}
	for _, im := range f.a.Images.Images {
		ref, err := name.NewDigest(host + "/guardyn/" + im.Name + "@" + im.Index)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := cosign.VerifyImageSignatures(context.Background(), ref, co); err != nil {
			t.Errorf("cosign verify %s: %v", ref, err)
		}
		for _, m := range im.Manifests {
			pref, _ := name.NewDigest(host + "/guardyn/" + im.Name + "@" + m.Digest)
			if _, _, err := cosign.VerifyImageSignatures(context.Background(), pref, co); err != nil {
				t.Errorf("cosign verify %s: %v", pref, err)
			}
			aco := *co
			aco.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
			if _, _, err := cosign.VerifyImageAttestations(context.Background(), pref, &aco); err != nil {
				t.Errorf("cosign verify-attestation %s: %v", pref, err)
			}
		}
	}
	// A registry image signed by another key does not verify.
	_, other, _ := testKeys(t, "")
	co.SigVerifier = other.SignatureVerifier()
	ref, _ := name.NewDigest(host + "/guardyn/" + f.a.Images.Images[0].Name + "@" + f.a.Images.Images[0].Index)
	if _, _, err := cosign.VerifyImageSignatures(context.Background(), ref, co); err == nil {
		t.Fatal("cosign verified the images with another key")
	}
}
