// Package render turns an overlay of infra/k8s into the objects an operator
// applies: the Go kustomize library renders it (no kubectl, no network), with
// DOMAIN and image digests set from the operator's inputs (a release bundle's
// images.json, the third-party lock) and the overlay's SOPS secrets decrypted
// when an age identity is given. infra/README.md states the contract.
package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Options say what to render.
type Options struct {
	// Root is the infra/k8s directory.
	Root string
	// Overlay is the overlay's directory name: "local" or "prod".
	Overlay string
	// Domain, when set, replaces DOMAIN of the overlay's params.env.
	Domain string
	// Locks, when given, pin every image the overlay's kustomization names:
	// each must be pinned by one of them.
	Locks []*Lock
	// Secrets, when set, opens the overlay's SOPS secrets
	// (secrets/OVERLAY/*.sops.yaml) and adds them to the output.
	Secrets SecretOpener
}

// SecretOpener decrypts one SOPS-encrypted file (infra/secrets.Opener).
type SecretOpener interface {
	Open(name string, data []byte) ([]byte, error)
}

// Object is one rendered Kubernetes object.
type Object struct {
	Kind, Namespace, Name string
	Fields                map[string]any
}

// ID names the object in errors: Kind namespace/name.
func (o Object) ID() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// Result is a rendered overlay.
type Result struct {
	Domain  string
	Objects []Object
	YAML    []byte // every object, as kubectl apply -f reads it
}

var dnsNameRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

const memRoot = "/k8s"

// Render renders opts.Overlay.
func Render(opts Options) (*Result, error) {
	if opts.Overlay == "" || strings.ContainsAny(opts.Overlay, `/\.`) {
		return nil, fmt.Errorf("render: overlay %q: want a directory name under overlays/", opts.Overlay)
	}
	mem := filesys.MakeFsInMemory()
	if err := copyTree(opts.Root, mem); err != nil {
		return nil, err
	}
	dir := path.Join(memRoot, "overlays", opts.Overlay)
	if !mem.Exists(path.Join(dir, "kustomization.yaml")) {
		return nil, fmt.Errorf("render: overlay %q: no %s", opts.Overlay, filepath.Join(opts.Root, "overlays", opts.Overlay, "kustomization.yaml"))
	}
	domain, err := setDomain(mem, dir, opts)
	if err != nil {
		return nil, err
	}
	if len(opts.Locks) > 0 {
		if err := pinImages(mem, dir, opts.Locks); err != nil {
			return nil, err
		}
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(mem, dir)
	if err != nil {
		return nil, fmt.Errorf("render: overlay %s: %w", opts.Overlay, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("render: overlay %s: %w", opts.Overlay, err)
	}
	if opts.Secrets != nil {
		more, err := openSecrets(opts)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	objs, err := Parse(out)
	if err != nil {
		return nil, err
	}
	return &Result{Domain: domain, Objects: objs, YAML: out}, nil
}

// Parse splits a multi-document YAML stream into objects.
func Parse(stream []byte) ([]Object, error) {
	var objs []Object
	for i, doc := range splitDocs(stream) {
		var f map[string]any
		if err := yaml.Unmarshal(doc, &f); err != nil {
			return nil, fmt.Errorf("render: document %d: %w", i, err)
		}
		if len(f) == 0 {
			continue
		}
		md, _ := f["metadata"].(map[string]any)
		o := Object{Fields: f}
		o.Kind, _ = f["kind"].(string)
		o.Name, _ = md["name"].(string)
		o.Namespace, _ = md["namespace"].(string)
		objs = append(objs, o)
	}
	return objs, nil
}

func splitDocs(stream []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "---" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes())
}

// copyTree copies the infra/k8s directory into the in-memory file system, so
// the operator's inputs change a copy, never the checkout.
func copyTree(root string, mem filesys.FileSystem) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("render: %w", err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if d.IsDir() && rel == "crds" {
			return filepath.SkipDir // applied apart, never rendered
		}
		dst := path.Join(memRoot, filepath.ToSlash(rel))
		if d.IsDir() {
			return mem.MkdirAll(dst)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("render: %w", err)
		}
		return mem.WriteFile(dst, data)
	})
}

// setDomain writes opts.Domain into the overlay's params.env when given, and
// checks the DOMAIN the overlay will use: it names every public host.
func setDomain(mem filesys.FileSystem, dir string, opts Options) (string, error) {
	params := path.Join(dir, "params.env")
	where := fmt.Sprintf("overlays/%s/params.env (ConfigMap apps/guardyn-domain)", opts.Overlay)
	if opts.Domain != "" {
		if err := mem.WriteFile(params, []byte("DOMAIN="+opts.Domain+"\n")); err != nil {
			return "", err
		}
	}
	data, err := mem.ReadFile(params)
	if err != nil {
		return "", fmt.Errorf("render: DOMAIN missing: no %s", where)
	}
	var domain string
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == "DOMAIN" {
			domain, found = v, true
		}
	}
	switch {
	case !found:
		return "", fmt.Errorf("render: DOMAIN missing from %s: it names every public host", where)
	case domain == "":
		return "", fmt.Errorf("render: DOMAIN is empty in %s: it names every public host", where)
	case !dnsNameRE.MatchString(domain):
		return "", fmt.Errorf("render: DOMAIN %q in %s is not a lower-case DNS name", domain, where)
	}
	return domain, nil
}

// pinImages rewrites the images list of the overlay's kustomization from the
// locks: guardyn/NAME from a lock with a repository, any other image from a
// lock entry of its full name. An image no lock pins is an error naming it.
func pinImages(mem filesys.FileSystem, dir string, locks []*Lock) error {
	kpath := path.Join(dir, "kustomization.yaml")
	data, err := mem.ReadFile(kpath)
	if err != nil {
		return err
	}
	var k types.Kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		return fmt.Errorf("render: %s: %w", kpath, err)
	}
	guardyn := map[string]string{} // NAME -> REPOSITORY/NAME@INDEX
	other := map[string]string{}   // full name -> digest
	for _, l := range locks {
		for _, im := range l.Images {
			if l.Repository != "" {
				guardyn[im.Name] = l.Repository + "/" + im.Name + "@" + im.Index
			} else {
				other[im.Name] = im.Index
			}
		}
	}
	var errs []error
	for i, im := range k.Images {
		if name, ok := strings.CutPrefix(im.Name, "guardyn/"); ok {
			ref, ok := guardyn[name]
			if !ok {
				errs = append(errs, fmt.Errorf("render: image %s: the release bundle's images.json has no image %q", im.Name, name))
				continue
			}
			repo, digest, _ := strings.Cut(ref, "@")
			k.Images[i] = types.Image{Name: im.Name, NewName: repo, Digest: digest}
			continue
		}
		digest, ok := other[im.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("render: image %s: no lock pins it (third-party images: the operator's third-party lock)", im.Name))
			continue
		}
		k.Images[i] = types.Image{Name: im.Name, NewName: im.NewName, Digest: digest}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	out, err := yaml.Marshal(&k)
	if err != nil {
		return err
	}
	return mem.WriteFile(kpath, out)
}

// openSecrets decrypts secrets/OVERLAY/*.sops.yaml, in name order.
func openSecrets(opts Options) ([]byte, error) {
	dir := filepath.Join(opts.Root, "secrets", opts.Overlay)
	names, err := filepath.Glob(filepath.Join(dir, "*.sops.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []byte
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		plain, err := opts.Secrets.Open(filepath.Base(n), data)
		if err != nil {
			return nil, fmt.Errorf("render: secret %s: %w", filepath.Base(n), err)
		}
		out = append(out, "---\n"...)
		out = append(out, plain...)
	}
	return out, nil
}

// Images lists the distinct container images of the objects, sorted.
func Images(objs []Object) []string {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if img, ok := t["image"].(string); ok {
				if _, isCtr := t["name"]; isCtr {
					seen[img] = true
				}
			}
			for _, e := range t {
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	for _, o := range objs {
		walk(o.Fields)
	}
	out := make([]string, 0, len(seen))
	for img := range seen {
		out = append(out, img)
	}
	sort.Strings(out)
	return out
}
