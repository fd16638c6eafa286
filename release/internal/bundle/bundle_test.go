package bundle

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/guardyn/guardyn/release/internal/sign"
	"github.com/guardyn/guardyn/release/internal/vuln"
)

const testVersion = "v0.0.0-test.1"

// The release built once per test run from two clones of HEAD in two
// directories (cosign and syft make a release slow to build: share it).
type releaseFixture struct {
	once     sync.Once
	err      error
	out      string // a temporary directory TestMain removes
	a, b     Result
	signer   *sign.Signer
	verifier *sign.Verifier
	db       string
}

var fixture releaseFixture

func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// headCommit is the repository's committed HEAD.
func headCommit(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repoRoot(t), "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// cloneHEAD clones the repository's committed HEAD into dst.
func cloneHEAD(t testing.TB, dst string) { cloneAt(t, dst, headCommit(t)) }

// cloneAt clones the repository into dst at commit. The fixture resolves
// HEAD once for both of its clones: a commit made while the first release
// builds must not make the second build another commit.
func cloneAt(t testing.TB, dst, commit string) {
	t.Helper()
	for _, args := range [][]string{
		{"clone", "--quiet", "--no-hardlinks", repoRoot(t), dst},
		{"-C", dst, "checkout", "--quiet", "--detach", commit},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", args[0], err, out)
		}
	}
}

func testKeys(t testing.TB, pass string) (*sign.Signer, *sign.Verifier, *cosign.KeysBytes) {
	t.Helper()
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte(pass), nil })
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadPrivateKey(kb.PrivateBytes, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.LoadPublicKey(kb.PublicBytes)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, kb
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.out != "" {
		os.RemoveAll(fixture.out)
	}
	os.Exit(code)
}

// release returns the fixture, building it on first use: the whole release
// (every target, every platform) from clone a and from clone b.
func release(t *testing.T) *releaseFixture {
	t.Helper()
	fixture.once.Do(func() {
		dir, err := os.MkdirTemp("", "guardyn-release-test-")
		if err != nil {
			fixture.err = err
			return
		}
		fixture.out = dir
		fixture.signer, fixture.verifier, _ = testKeys(t, "test")
		// The full pinned database: the release's pinned toolchain has no
		// published vulnerability in it, so a release that builds has been
		// audited clean (Build refuses one with a reachable finding).
		if fixture.db, err = vuln.CachedDB(context.Background()); err != nil {
			fixture.err = err
			return
		}
		head := headCommit(t)
		for i, r := range []*Result{&fixture.a, &fixture.b} {
			src := filepath.Join(dir, "src"+string(rune('a'+i)), "guardyn")
			cloneAt(t, src, head)
			*r, err = Build(context.Background(), Options{
				Source: src, Version: testVersion, Signer: fixture.signer,
				Out: filepath.Join(dir, "dist"+string(rune('a'+i))), VulnDB: fixture.db,
				Progress: func(s string) { t.Logf("release %c: %s", 'a'+i, s) },
			})
			if err != nil {
				fixture.err = err
				return
			}
		}
	})
	if fixture.err != nil {
		t.Fatalf("building the release: %v", fixture.err)
	}
	return &fixture
}

func readManifest(t *testing.T, dir string) Manifest {
	t.Helper()
	var m Manifest
	if err := readJSON(filepath.Join(dir, ManifestFile), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReleaseIsReproducible builds the whole release twice from the same
// commit in two directories and compares every digest of the two bundles,
// signatures included (deterministic ECDSA), and the tarballs.
func TestReleaseIsReproducible(t *testing.T) {
	f := release(t)
	ma, mb := readManifest(t, f.a.Dir), readManifest(t, f.b.Dir)
	if len(ma.Files) < 40 {
		t.Fatalf("bundle lists %d files; expected binaries, images, SBOMs, signatures, attestations and reports", len(ma.Files))
	}
	want := map[string]string{}
	for _, e := range ma.Files {
		want[e.Path] = e.SHA256
	}
	for _, e := range mb.Files {
		if want[e.Path] != e.SHA256 {
			t.Errorf("%s: sha256 %s in the second build, %s in the first", e.Path, e.SHA256, want[e.Path])
		}
		delete(want, e.Path)
	}
	for p := range want {
		t.Errorf("%s: only in the first build", p)
	}
	for _, f := range []string{ManifestFile, ManifestSigFile} {
		a, _ := os.ReadFile(filepath.Join(fixture.a.Dir, f))
		b, _ := os.ReadFile(filepath.Join(fixture.b.Dir, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the builds", f)
		}
	}
	ta, _ := os.ReadFile(f.a.Tarball)
	tb, _ := os.ReadFile(f.b.Tarball)
	if len(ta) == 0 || !bytes.Equal(ta, tb) {
		t.Error("the tarballs differ")
	}
	for _, b := range f.a.Images.Binaries {
		if b.Target == "auth" {
			bin, _ := os.ReadFile(filepath.Join(f.a.Dir, b.Path))
			if !bytes.Contains(bin, []byte(testVersion)) || !bytes.Contains(bin, []byte(ma.Commit)) {
				t.Errorf("%s does not carry the version and commit stamp", b.Path)
			}
		}
	}
}

func verify(t *testing.T, dir string, key *sign.Verifier) []Problem {
	t.Helper()
	problems, err := Verify(context.Background(), dir, key, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return problems
}

func TestVerifyAcceptsTheRelease(t *testing.T) {
	f := release(t)
	if p := verify(t, f.a.Dir, f.verifier); len(p) != 0 {
		t.Fatalf("a fresh bundle fails verification: %v", p)
	}
	_, other, _ := testKeys(t, "")
	p := verify(t, f.a.Dir, other)
	if !hasProblem(p, ManifestSigFile, CheckManifestSig) || !hasProblem(p, "sig/auth.json", CheckImageSig) || !hasProblem(p, ProvenanceFile, CheckProvenance) {
		t.Fatalf("verified with another public key: %v", p)
	}
}

func hasProblem(ps []Problem, file, check string) bool {
	for _, p := range ps {
		if p.File == file && p.Check == check {
			return true
		}
	}
	return false
}

// keep saves files so a tamper can be undone.
func keep(t *testing.T, dir string, rels ...string) func() {
	saved := map[string][]byte{}
	for _, r := range rels {
		b, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		saved[r] = b
	}
	return func() {
		for r, b := range saved {
			if err := os.WriteFile(filepath.Join(dir, r), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func largestBlob(t *testing.T) string {
	t.Helper()
	// The largest blob of the layout is a layer holding a binary.
	entries, err := os.ReadDir(filepath.Join(fixture.a.Dir, "oci", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	best, size := "", int64(0)
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Size() > size {
			best, size = e.Name(), fi.Size()
		}
	}
	return "oci/blobs/sha256/" + best
}

// TestVerifyCatchesTampering changes the bundle one way at a time and
// checks that verify fails naming the file and the check.
func TestVerifyCatchesTampering(t *testing.T) {
	f := release(t)
	dir := f.a.Dir
	other, _, _ := testKeys(t, "")
	cases := []struct {
		name  string
		do    func(t *testing.T) func()
		file  string
		check string
	}{
		{"flipped layer byte", func(t *testing.T) func() {
			layer := largestBlob(t)
			undo := keep(t, dir, layer)
			b, _ := os.ReadFile(filepath.Join(dir, layer))
			b[len(b)/2] ^= 0x01
			os.WriteFile(filepath.Join(dir, layer), b, 0o644)
			return undo
		}, "*", CheckOCI},
		{"swapped SBOM", func(t *testing.T) func() {
			a, m := "sbom/auth-linux-amd64.spdx.json", "sbom/messaging-linux-amd64.spdx.json"
			undo := keep(t, dir, a, m)
			ab, _ := os.ReadFile(filepath.Join(dir, a))
			mb, _ := os.ReadFile(filepath.Join(dir, m))
			os.WriteFile(filepath.Join(dir, a), mb, 0o644)
			os.WriteFile(filepath.Join(dir, m), ab, 0o644)
			return undo
		}, "sbom/auth-linux-amd64.spdx.json", CheckSBOM},
		{"signature by another key", func(t *testing.T) func() {
			file := "sig/messaging.json"
			undo := keep(t, dir, file)
			var im Images
			readJSON(filepath.Join(dir, ImagesFile), &im)
			var is sign.ImageSignature
			readJSON(filepath.Join(dir, file), &is)
			sig, err := other.SignBlob(is.Payload)
			if err != nil {
				t.Fatal(err)
			}
			is.Signature = sig
			writeJSON(filepath.Join(dir, file), is)
			return undo
		}, "sig/messaging.json", CheckImageSig},
		{"provenance for another digest", func(t *testing.T) func() {
			undo := keep(t, dir, ProvenanceFile)
			env, _ := os.ReadFile(filepath.Join(dir, ProvenanceFile))
			st, err := envelopePayload(env)
			if err != nil {
				t.Fatal(err)
			}
			bin := f.a.Images.Binaries[0]
			st = bytes.Replace(st, []byte(bin.SHA256), []byte(strings.Repeat("0", 64)), 1)
			resigned, err := f.signer.Attest(st) // even with the right key
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, ProvenanceFile), resigned, 0o644)
			return undo
		}, ProvenanceFile, CheckProvenance},
		{"manifest lists a missing file", func(t *testing.T) func() {
			file := "vuln/source.json"
			undo := keep(t, dir, file)
			os.Remove(filepath.Join(dir, file))
			return undo
		}, "vuln/source.json", CheckManifest},
		{"deploy manifest pins another image", func(t *testing.T) func() {
			file := DeployDir + "/local.yaml"
			undo := keep(t, dir, file)
			b, _ := os.ReadFile(filepath.Join(dir, file))
			var server Image
			for _, i := range f.a.Images.Images {
				if i.Name == "guardyn-server" {
					server = i
				}
			}
			b = bytes.ReplaceAll(b, []byte(server.Index), []byte("sha256:"+strings.Repeat("0", 64)))
			os.WriteFile(filepath.Join(dir, file), b, 0o644)
			return undo
		}, DeployDir + "/local.yaml", CheckDeploy},
		{"extra file", func(t *testing.T) func() {
			file := filepath.Join(dir, "bin", "backdoor")
			os.WriteFile(file, []byte("#!/bin/sh\n"), 0o755)
			return func() { os.Remove(file) }
		}, "bin/backdoor", CheckManifest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			undo := c.do(t)
			p := verify(t, dir, f.verifier)
			undo()
			found := false
			for _, q := range p {
				if q.Check == c.check && (c.file == "*" || q.File == c.file) {
					found = true
				}
			}
			if !found {
				t.Fatalf("verify did not report %s on %s; got %v", c.check, c.file, p)
			}
			t.Logf("verify: %v", p)
		})
	}
	if p := verify(t, dir, f.verifier); len(p) != 0 {
		t.Fatalf("the bundle does not verify after undoing the tampering: %v", p)
	}
}

// TestBadInputs: each is refused with a clear error before anything is
// written.
func TestBadInputs(t *testing.T) {
	signer, _, _ := testKeys(t, "")
	src := filepath.Join(t.TempDir(), "guardyn")
	cloneHEAD(t, src)
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"non-semver version", Options{Version: "0.3", Signer: signer}, "not semver"},
		{"unknown service", Options{Version: "v0.3.0", Signer: signer, Targets: []string{"auth", "billing"}}, `unknown service "billing"`},
		{"no key", Options{Version: "v0.3.0"}, "no signing key"},
		{"domain without a lock", Options{Version: "v0.3.0", Signer: signer, Domain: "chat.example.org"}, "needs a lock of the third-party images"},
		{"lock without a domain", Options{Version: "v0.3.0", Signer: signer, ThirdPartyLock: "lock.json"}, "needs its domain"},
		{"missing lock", Options{Version: "v0.3.0", Signer: signer, Domain: "chat.example.org", ThirdPartyLock: "/nonexistent/lock.json"}, "third-party lock: stat /nonexistent/lock.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			c.opts.Source, c.opts.Out = src, out
			_, err := Build(context.Background(), c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			assertEmpty(t, out)
		})
	}
	t.Run("bundle already in --out", func(t *testing.T) {
		out := t.TempDir()
		existing := filepath.Join(out, DirName("v0.3.0"), ManifestFile)
		if err := os.MkdirAll(filepath.Dir(existing), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(existing, []byte("earlier\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Build(context.Background(), Options{Source: src, Version: "v0.3.0", Signer: signer, Out: out})
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("got %v, want an already-exists error", err)
		}
		entries, _ := os.ReadDir(out)
		b, _ := os.ReadFile(existing)
		if len(entries) != 1 || string(b) != "earlier\n" {
			t.Fatalf("--out changed: %d entries, manifest %q", len(entries), b)
		}
	})
	t.Run("dirty tree for a tagged release", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("changed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		for _, allow := range []bool{false, true} {
			_, err := Build(context.Background(), Options{Source: src, Version: "v0.3.0", Signer: signer, Out: out, AllowDirty: allow})
			if err == nil || !strings.Contains(err.Error(), "uncommitted changes") {
				t.Fatalf("allow-dirty=%v: got %v, want an uncommitted-changes error", allow, err)
			}
		}
		_, err := Build(context.Background(), Options{Source: src, Version: "v0.3.0-rc.1", Signer: signer, Out: out})
		if err == nil || !strings.Contains(err.Error(), "--allow-dirty") {
			t.Fatalf("pre-release without --allow-dirty: got %v", err)
		}
		assertEmpty(t, out)
	})
}

// TestFailedBuildLeavesNothing: a build that fails half way (here: the
// source does not compile) leaves no bundle directory, no tarball and no
// staging directory behind.
func TestFailedBuildLeavesNothing(t *testing.T) {
	signer, _, _ := testKeys(t, "")
	src := filepath.Join(t.TempDir(), "guardyn")
	cloneHEAD(t, src)
	bad := filepath.Join(src, "apps", "guardyn", "broken.go")
	if err := os.WriteFile(bad, []byte("package main\n\nfunc broken() { undefined() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	_, err := Build(context.Background(), Options{Source: src, Version: "v0.0.1-dev", Signer: signer, Out: out, AllowDirty: true, Targets: []string{"guardyn"}})
	if err == nil || !strings.Contains(err.Error(), "building guardyn") {
		t.Fatalf("got %v, want a build error", err)
	}
	assertEmpty(t, out)
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("%s holds %v after a refused build", dir, names)
	}
}
