// Command release builds Guardyn's signed, reproducible release bundles
// and verifies them offline. From the release/ directory of a checkout:
//
//	go run . keygen --out ..
//	go run . build --version v0.3.0 --key cosign.key --out ../dist
//	go run . verify --key cosign.pub ../dist/guardyn-v0.3.0
//	go run . verify --key cosign.pub --rebuild ../dist/guardyn-v0.3.0
//	go run . push --repo registry.example.com/guardyn ../dist/guardyn-v0.3.0
//
// The key pair is the one `cosign generate-key-pair` (or `keygen`) writes; the private
// key's passphrase comes from COSIGN_PASSWORD (as for cosign itself) or a
// prompt. release/ is its own Go module so that syft, cosign and their
// hundreds of dependencies never enter the product's go.mod. See
// docs/release.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"golang.org/x/term"

	"github.com/guardyn/guardyn/release/internal/bundle"
	"github.com/guardyn/guardyn/release/internal/sign"
)

const usage = `usage:
  release keygen --out DIR
  release build --version vX.Y.Z --key cosign.key --out DIR [flags]
  release verify --key cosign.pub [--rebuild] BUNDLE_DIR
  release push --repo REGISTRY/PREFIX BUNDLE_DIR
Run "release COMMAND -h" for a command's flags.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command line, returning the exit status: 0 success, 1 a
// failed build or verification, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "keygen":
		err = cmdKeygen(args[1:], stdout, stderr)
	case "build":
		err = cmdBuild(ctx, args[1:], stdout, stderr)
	case "verify":
		err = cmdVerify(ctx, args[1:], stdout, stderr)
	case "push":
		err = cmdPush(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		err = usageError{fmt.Errorf("unknown command %q\n%s", args[0], usage)}
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "release:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "release:", err)
		return 1
	}
}

type usageError struct{ error }

// progress prints each step with the time since start.
func progress(w io.Writer) func(string) {
	start := time.Now()
	return func(s string) {
		fmt.Fprintf(w, "[%6.1fs] %s\n", time.Since(start).Seconds(), s)
	}
}

func cmdBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "", "release version, semver with a leading v (v0.3.0)")
	keyPath := fs.String("key", "", "cosign private key (cosign generate-key-pair); passphrase from COSIGN_PASSWORD or a prompt")
	out := fs.String("out", "", "directory the bundle directory and tarball are written into")
	source := fs.String("source", ".", "a directory inside the product's git checkout")
	targets := fs.String("targets", "", "comma-separated targets (default: all: auth, messaging, media, presence, notification, guardyn-server, guardyn)")
	repo := fs.String("repo", bundle.DefaultRepository, "image repository prefix the signatures name")
	builder := fs.String("builder-id", "", "SLSA builder id (default: the local builder; CI sets its workflow's)")
	allowDirty := fs.Bool("allow-dirty", false, "build a pre-release from a checkout with uncommitted changes")
	vulndb := fs.String("vulndb", "", "govulncheck database directory (default: built from the pinned golang.org/x/vulndb)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("build: unexpected arguments %q", fs.Args())}
	}
	if *version == "" || *keyPath == "" || *out == "" {
		return usageError{errors.New("build: --version, --key and --out are required")}
	}
	keyPEM, err := os.ReadFile(*keyPath)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	pass, err := passphrase(stderr)
	if err != nil {
		return err
	}
	signer, err := sign.LoadPrivateKey(keyPEM, pass)
	if err != nil {
		return fmt.Errorf("signing key %s: %w", *keyPath, err)
	}
	var names []string
	if *targets != "" {
		names = strings.Split(*targets, ",")
	}
	start := time.Now()
	res, err := bundle.Build(ctx, bundle.Options{
		Source: *source, Version: *version, Signer: signer, Out: *out, Targets: names,
		Repository: *repo, BuilderID: *builder, AllowDirty: *allowDirty, VulnDB: *vulndb,
		Progress: progress(stderr),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bundle %s\ntarball %s\n", res.Dir, res.Tarball)
	for _, im := range res.Images.Images {
		fmt.Fprintf(stdout, "image %s/%s@%s\n", res.Images.Repository, im.Name, im.Index)
	}
	fmt.Fprintf(stdout, "built in %.1fs\n", time.Since(start).Seconds())
	return nil
}

// passphrase reads the private key's passphrase as cosign does: from
// COSIGN_PASSWORD when set (empty is a valid passphrase), else from the
// terminal.
func passphrase(stderr io.Writer) ([]byte, error) {
	if p, ok := os.LookupEnv("COSIGN_PASSWORD"); ok {
		return []byte(p), nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, errors.New("signing key: no passphrase: set COSIGN_PASSWORD (empty for a key without one)")
	}
	fmt.Fprint(stderr, "Enter password for private key: ")
	p, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(stderr)
	return p, err
}

// cmdKeygen writes cosign.key and cosign.pub exactly as `cosign
// generate-key-pair` does, so a release engineer needs no cosign install.
// It never overwrites a key: losing the old private key would orphan every
// bundle signed with it.
func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", ".", "directory cosign.key and cosign.pub are written into")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("keygen: unexpected arguments %q", fs.Args())}
	}
	keyPath := filepath.Join(*out, "cosign.key")
	pubPath := filepath.Join(*out, "cosign.pub")
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("keygen: %s already exists; not overwriting a key", p)
		}
	}
	pass, err := newPassphrase(stderr)
	if err != nil {
		return err
	}
	kp, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return pass, nil })
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	// O_EXCL: a key that appeared since the check above is not overwritten either.
	if err := writeNew(keyPath, kp.PrivateBytes, 0o600); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := writeNew(pubPath, kp.PublicBytes, 0o644); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(stdout, "private key %s\npublic key %s\n", keyPath, pubPath)
	return nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// newPassphrase asks for a new key's passphrase: COSIGN_PASSWORD when set,
// else twice on the terminal.
func newPassphrase(stderr io.Writer) ([]byte, error) {
	if p, ok := os.LookupEnv("COSIGN_PASSWORD"); ok {
		return []byte(p), nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, errors.New("keygen: no passphrase: set COSIGN_PASSWORD (empty for a key without one)")
	}
	fmt.Fprint(stderr, "Enter password for private key: ")
	p1, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(stderr, "Enter password for private key again: ")
	p2, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p1, p2) {
		return nil, errors.New("keygen: passwords do not match")
	}
	return p1, nil
}

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyPath := fs.String("key", "", "cosign public key (cosign.pub)")
	rebuild := fs.Bool("rebuild", false, "rebuild from the checkout at --source and compare every digest")
	source := fs.String("source", ".", "with --rebuild: a directory inside the product's checkout, at the bundle's commit")
	vulndb := fs.String("vulndb", "", "with --rebuild: govulncheck database directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 || *keyPath == "" {
		return usageError{errors.New("verify: want --key cosign.pub and one bundle directory")}
	}
	pub, err := os.ReadFile(*keyPath)
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	key, err := sign.LoadPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%s: %w", *keyPath, err)
	}
	start := time.Now()
	problems, err := bundle.Verify(ctx, fs.Arg(0), key, bundle.VerifyOptions{Rebuild: *rebuild, Source: *source, VulnDB: *vulndb, Progress: progress(stderr)})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stdout, "FAIL", p)
		}
		return fmt.Errorf("verify: %d problems in %s", len(problems), fs.Arg(0))
	}
	fmt.Fprintf(stdout, "OK %s (%.1fs)\n", fs.Arg(0), time.Since(start).Seconds())
	return nil
}

func cmdPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	repo := fs.String("repo", "", "registry and prefix to push to, e.g. registry.example.com/guardyn")
	tag := fs.String("tag", "", "tag to push (default: the bundle's version)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 || *repo == "" {
		return usageError{errors.New("push: want --repo and one bundle directory")}
	}
	// Credentials as docker and crane find them (~/.docker/config.json).
	refs, err := bundle.Push(ctx, fs.Arg(0), *repo, *tag, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return err
	}
	for _, r := range refs {
		fmt.Fprintln(stdout, r)
	}
	return nil
}
