package bundle

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/guardyn/guardyn/release/internal/deploycheck"
)

// DeployDir holds the Kubernetes overlays of infra/k8s rendered with the
// bundle's own images pinned by digest, so an operator applies exactly what
// was signed: k8s/local.yaml (the seed's k3d cluster, all-in-one server and
// the web app's server; rendered when both are among the targets) and,
// given a domain and a lock of the third-party images, k8s/prod.yaml.
const DeployDir = "k8s"

// CheckDeploy names verify's check of the rendered overlays.
const CheckDeploy = "deploy manifests"

// ThirdPartyLockFile is the operator's lock of third-party images, kept in
// DeployDir beside prod.yaml so that verify --rebuild renders it again.
const ThirdPartyLockFile = "third-party.lock.json"

// renderOverlays runs the infra module's renderer (infra/cmd/infra, the
// one operators run) from the source checkout. The renderer is a program of
// its own module, run rather than imported, so that release/ does not take
// on kustomize and SOPS: the same reason the product's go.mod stays free of
// syft and cosign.
func renderOverlays(ctx context.Context, opts *Options, src Source, dir string, im Images) error {
	infra := filepath.Join(src.Root, "infra")
	if _, err := os.Stat(filepath.Join(infra, "cmd", "infra")); err != nil {
		return fmt.Errorf("deploy manifests: %s has no infra/cmd/infra: %w", src.Root, err)
	}
	have := map[string]bool{}
	for _, i := range im.Images {
		have[i.Name] = true
	}
	imagesJSON := filepath.Join(dir, ImagesFile)
	type overlay struct {
		name string
		args []string
	}
	var overlays []overlay
	if have["guardyn-server"] && have["guardyn-web"] {
		overlays = append(overlays, overlay{"local", []string{"-overlay", "local", "-images", imagesJSON}})
	}
	if opts.Domain != "" {
		lock, err := os.ReadFile(opts.ThirdPartyLock)
		if err != nil {
			return fmt.Errorf("third-party lock: %w", err)
		}
		kept := filepath.Join(dir, DeployDir, ThirdPartyLockFile)
		if err := writeFile(kept, lock); err != nil {
			return err
		}
		for _, s := range []string{"auth", "messaging", "media", "presence", "notification", "guardyn-web"} {
			if !have[s] {
				return fmt.Errorf("deploy manifests: --domain renders the prod overlay, which runs every service; %s is not among the targets", s)
			}
		}
		overlays = append(overlays, overlay{"prod", []string{"-overlay", "prod", "-domain", opts.Domain, "-images", imagesJSON, "-images", kept}})
	}
	for _, o := range overlays {
		out := filepath.Join(dir, DeployDir, o.name+".yaml")
		opts.progress("render %s/%s.yaml", DeployDir, o.name)
		cmd := exec.CommandContext(ctx, "go", append([]string{"run", "./cmd/infra", "render"}, o.args...)...)
		cmd.Dir = infra
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("deploy manifests: rendering the %s overlay: %v: %s", o.name, err, strings.TrimSpace(stderr.String()))
		}
		if problems := checkDeployImages(stdout.Bytes(), im); len(problems) > 0 {
			return fmt.Errorf("deploy manifests: the %s overlay: %s", o.name, strings.Join(problems, "; "))
		}
		if err := writeFile(out, stdout.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// checkDeployImages checks a rendered overlay against images.json.
func checkDeployImages(doc []byte, im Images) []string {
	index := map[string]string{}
	for _, i := range im.Images {
		index[im.Repository+"/"+i.Name] = i.Index
	}
	return deploycheck.Images(doc, im.Repository, index, ImagesFile)
}

// deploy checks every rendered overlay in the bundle against images.json.
func (v *verifier) deploy(m Manifest, im Images) {
	for _, f := range m.Files {
		if !strings.HasPrefix(f.Path, DeployDir+"/") || !strings.HasSuffix(f.Path, ".yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(v.dir, filepath.FromSlash(f.Path)))
		if err != nil {
			v.fail(f.Path, CheckDeploy, "%v", err)
			continue
		}
		for _, p := range checkDeployImages(b, im) {
			v.fail(f.Path, CheckDeploy, "%s", p)
		}
	}
}
