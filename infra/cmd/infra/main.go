// Command infra renders Guardyn's Kubernetes overlays for an operator and
// seals secrets for them (infra/README.md, docs/operations.md):
//
//	go run ./cmd/infra render -overlay prod -domain chat.example.com \
//	    -images bundle/images.json -images third-party.lock.json [-age-key key.txt] > guardyn.yaml
//	go run ./cmd/infra images -overlay prod      # the images a lock must pin
//	go run ./cmd/infra seal -recipient age1… < secret.yaml > secret.sops.yaml
//	go run ./cmd/infra check -overlay prod -domain … -images …   # render, then the policy
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/guardyn/guardyn/infra/policy"
	"github.com/guardyn/guardyn/infra/render"
	"github.com/guardyn/guardyn/infra/secrets"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: infra render|check|images|seal [flags]")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "infra:", err)
		os.Exit(1)
	}
}

func run(cmd string, args []string, stdin io.Reader, stdout io.Writer) error {
	switch cmd {
	case "render", "check", "images", "seal":
	default:
		return fmt.Errorf("unknown command %q: want render, check, images or seal", cmd)
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	root := fs.String("root", "k8s", "the infra/k8s directory")
	overlay := fs.String("overlay", "local", "overlay: local or prod")
	domain := fs.String("domain", "", "DOMAIN, the one public name (default: the overlay's params.env)")
	ageKey := fs.String("age-key", "", "file of age identities: decrypt the overlay's SOPS secrets into the output")
	recipient := fs.String("recipient", "", "seal: the age recipient (age1…)")
	var images list
	fs.Var(&images, "images", "image lock: a release bundle's images.json or the third-party lock (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cmd == "seal" {
		plain, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		out, err := secrets.Seal(plain, *recipient)
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	}
	opts := render.Options{Root: *root, Overlay: *overlay, Domain: *domain}
	for _, f := range images {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		l, err := render.ParseLock(data)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		opts.Locks = append(opts.Locks, l)
	}
	if *ageKey != "" && cmd == "render" { // check holds the overlay to "no Secret in it"
		ids, err := os.ReadFile(*ageKey)
		if err != nil {
			return err
		}
		if opts.Secrets, err = secrets.NewOpener(string(ids)); err != nil {
			return err
		}
	}
	r, err := render.Render(opts)
	if err != nil {
		return err
	}
	switch cmd {
	case "render":
		_, err = stdout.Write(r.YAML)
		return err
	case "check":
		popts := policy.Options{Domain: r.Domain, Digests: *overlay == "prod", Nodes: 5, NodeCPU: "2", NodeMemory: "4Gi"}
		if err := policy.Check(r.Objects, popts); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d objects pass the policy\n", *overlay, len(r.Objects))
		return nil
	case "images":
		for _, img := range render.Images(r.Objects) {
			fmt.Fprintln(stdout, img)
		}
	}
	return nil
}
