package bundle

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	cmutate "github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"

	"github.com/guardyn/guardyn/release/internal/ociimage"
	"github.com/guardyn/guardyn/release/internal/sign"
)

// Push copies a bundle's images to repo (e.g.
// "registry.example.com/guardyn": each image goes to repo/NAME) under tag
// (default: the bundle's version), with their cosign signatures and SBOM
// attestations where `cosign verify` and `cosign verify-attestation` look
// for them. It returns the digest references to deploy by. The bundle is
// not verified here: run verify first.
func Push(ctx context.Context, dir, repo, tag string, opts ...remote.Option) ([]string, error) {
	var m Manifest
	if err := readJSON(filepath.Join(dir, ManifestFile), &m); err != nil {
		return nil, err
	}
	if tag == "" {
		tag = m.Version
	}
	var im Images
	if err := readJSON(filepath.Join(dir, ImagesFile), &im); err != nil {
		return nil, err
	}
	indexes, err := ociimage.ReadLayout(filepath.Join(dir, "oci"))
	if err != nil {
		return nil, err
	}
	ropts := append([]remote.Option{remote.WithContext(ctx)}, opts...)
	var refs []string
	for _, i := range im.Images {
		idx, ok := indexes[i.Name]
		if !ok {
			return nil, fmt.Errorf("push: image %s is not in the layout", i.Name)
		}
		ref, err := ociimage.Push(ctx, repo+"/"+i.Name, tag, idx, opts...)
		if err != nil {
			return nil, err
		}
		if ref.DigestStr() != i.Index {
			return nil, fmt.Errorf("push: %s: pushed %s, images.json says %s", i.Name, ref.DigestStr(), i.Index)
		}
		targets := map[string]string{"sig/" + i.Name + ".json": i.Index}
		for _, mf := range i.Manifests {
			base := i.Name + "-" + strings.ReplaceAll(mf.Platform, "/", "-")
			targets["sig/"+base+".json"] = mf.Digest
		}
		for file, digest := range targets {
			var is sign.ImageSignature
			if err := readJSON(filepath.Join(dir, filepath.FromSlash(file)), &is); err != nil {
				return nil, err
			}
			d := ref.Context().Digest(digest)
			se, err := ociremote.SignedEntity(d, ociremote.WithRemoteOptions(ropts...))
			if err != nil {
				return nil, fmt.Errorf("push: %s: %w", d, err)
			}
			sig, err := static.NewSignature(is.Payload, is.Signature)
			if err != nil {
				return nil, err
			}
			if se, err = cmutate.AttachSignatureToEntity(se, sig); err != nil {
				return nil, err
			}
			if digest != i.Index {
				// The SBOM attestation of this platform's image.
				base := strings.TrimSuffix(strings.TrimPrefix(file, "sig/"), ".json")
				env, err := os.ReadFile(filepath.Join(dir, "attest", base+".sbom.intoto.json"))
				if err != nil {
					return nil, err
				}
				att, err := static.NewAttestation(env)
				if err != nil {
					return nil, err
				}
				if se, err = cmutate.AttachAttestationToEntity(se, att); err != nil {
					return nil, err
				}
				if err := ociremote.WriteAttestations(d.Context(), se, ociremote.WithRemoteOptions(ropts...)); err != nil {
					return nil, fmt.Errorf("push: attestation of %s: %w", d, err)
				}
			}
			if err := ociremote.WriteSignatures(d.Context(), se, ociremote.WithRemoteOptions(ropts...)); err != nil {
				return nil, fmt.Errorf("push: signature of %s: %w", d, err)
			}
		}
		refs = append(refs, ref.String())
	}
	return refs, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
