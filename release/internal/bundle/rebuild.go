package bundle

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/guardyn/guardyn/release/internal/provenance"
)

// rebuild builds the release again, unsigned, from the checkout at
// opts.Source and compares every file with the bundle: bytes for
// everything but signatures and attestations, the signed statement for
// attestations (an auditor has no private key to sign with; the signatures
// themselves are checked against the public key).
func (v *verifier) rebuild(ctx context.Context, m Manifest, opts VerifyOptions) error {
	src, err := ReadSource(ctx, opts.Source)
	if err != nil {
		return err
	}
	if src.Commit != m.Commit {
		return fmt.Errorf("checkout %s is at %s; the bundle was built from %s (git checkout %s)", src.Root, src.Commit, m.Commit, m.Commit)
	}
	if src.Dirty {
		return fmt.Errorf("checkout %s has uncommitted changes", src.Root)
	}
	var im Images
	b, _ := os.ReadFile(filepath.Join(v.dir, ImagesFile))
	if err := json.Unmarshal(b, &im); err != nil {
		return fmt.Errorf("%s: %w", ImagesFile, err)
	}
	var targets []string
	seen := map[string]bool{}
	for _, b := range im.Binaries {
		if !seen[b.Target] {
			seen[b.Target] = true
			targets = append(targets, b.Target)
		}
	}
	builder := provenance.DefaultBuilderID
	if env, err := os.ReadFile(filepath.Join(v.dir, filepath.FromSlash(ProvenanceFile))); err == nil {
		if p, err := envelopePayload(env); err == nil {
			if st, err := provenance.Parse(p); err == nil {
				builder = st.Predicate.RunDetails.Builder.ID
			}
		}
	}
	tmp, err := os.MkdirTemp("", "guardyn-rebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	res, err := Build(ctx, Options{
		Source: src.Root, Version: m.Version, Out: tmp, Targets: targets,
		Repository: im.Repository, BuilderID: builder, VulnDB: opts.VulnDB,
		Progress: opts.Progress, unsigned: true,
	})
	if err != nil {
		return fmt.Errorf("rebuild failed: %w", err)
	}
	rebuilt, err := listFiles(res.Dir)
	if err != nil {
		return err
	}
	original := map[string]Entry{}
	for _, e := range m.Files {
		original[e.Path] = e
	}
	for _, f := range rebuilt {
		e, ok := original[f]
		if !ok {
			v.fail(f, CheckRebuild, "the rebuild has this file; the bundle does not")
			continue
		}
		delete(original, f)
		switch {
		case strings.HasPrefix(f, "attest/"):
			env, err := os.ReadFile(filepath.Join(v.dir, filepath.FromSlash(f)))
			if err != nil {
				v.fail(f, CheckRebuild, "%v", err)
				continue
			}
			payload, err := envelopePayload(env)
			if err != nil {
				v.fail(f, CheckRebuild, "%v", err)
				continue
			}
			want, err := os.ReadFile(filepath.Join(res.Dir, filepath.FromSlash(f)))
			if err != nil {
				v.fail(f, CheckRebuild, "%v", err)
				continue
			}
			if !bytes.Equal(payload, want) {
				v.fail(f, CheckRebuild, "the attested statement differs from the rebuilt one")
			}
		default:
			sum, _, err := hashFile(filepath.Join(res.Dir, filepath.FromSlash(f)))
			if err != nil {
				v.fail(f, CheckRebuild, "%v", err)
				continue
			}
			if sum != e.SHA256 {
				v.fail(f, CheckRebuild, "rebuilt sha256 %s, bundle has %s", sum, e.SHA256)
			}
		}
	}
	for f := range original {
		if !strings.HasPrefix(f, "sig/") {
			v.fail(f, CheckRebuild, "the bundle has this file; the rebuild does not")
		}
	}
	return nil
}

func envelopePayload(env []byte) ([]byte, error) {
	var e struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		return nil, fmt.Errorf("attestation envelope: %w", err)
	}
	return base64.StdEncoding.DecodeString(e.Payload)
}
