package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DeployDir holds the Kubernetes overlays of infra/k8s rendered with the
// bundle's own images pinned by digest, so an operator applies exactly what
// was signed: k8s/local.yaml (the seed's k3d cluster, all-in-one server) and,
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
	if have["guardyn-server"] {
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
		for _, s := range []string{"auth", "messaging", "media", "presence", "notification"} {
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

// checkDeployImages returns what is wrong with the Guardyn images a rendered
// overlay names: each must be one of the bundle's images, from its
// repository, pinned to its index digest. Third-party images are the
// operator's lock's business (infra's check), not the bundle's. The YAML is
// parsed, not scanned line by line: YAML can put a value on the next line or
// in flow style, and a check a layout can dodge proves nothing.
func checkDeployImages(doc []byte, im Images) []string {
	refs, err := imageRefs(doc)
	if err != nil {
		return []string{err.Error()}
	}
	want := map[string]string{}
	for _, i := range im.Images {
		want[im.Repository+"/"+i.Name] = i.Index
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
		if !strings.HasPrefix(repo, im.Repository+"/") {
			continue
		}
		index, ok := want[repo]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("image %s is not in %s", ref, ImagesFile))
		case !pinned:
			problems = append(problems, fmt.Sprintf("image %s is not pinned by digest", ref))
		case digest != index:
			problems = append(problems, fmt.Sprintf("image %s, %s says %s", ref, ImagesFile, index))
		}
	}
	sort.Strings(problems)
	return problems
}

// imageRefs returns the value of every "image" key anywhere in a stream of
// YAML documents.
func imageRefs(doc []byte) ([]string, error) {
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
