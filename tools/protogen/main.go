// Command protogen regenerates the Go code and the descriptor set of the Guardyn APIs from
// proto/guardyn/**/*.proto with protoc and the protoc-gen-go and protoc-gen-go-grpc versions
// pinned in go.mod, as described in docs/api.md ("Regenerating").
//
// Usage, from anywhere inside the module:
//
//	go run ./tools/protogen          # rewrite stale generated files, delete orphaned ones
//	go run ./tools/protogen -check   # exit 1 listing stale files, change nothing (CI)
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// wantProtoc is the protoc release whose output is committed. Generated files name the protoc
// version, so a different protoc would make every file look stale.
const wantProtoc = "libprotoc 3.21.12"

const (
	protoDir       = "proto"                    // proto root, relative to the module root
	descriptorFile = "apidesc/descriptor.binpb" // descriptor set, relative to protoDir
)

func main() {
	check := flag.Bool("check", false, "regenerate into a temporary directory and fail if any committed file differs")
	protoc := flag.String("protoc", "protoc", "protoc binary to run")
	flag.Parse()

	if err := run(context.Background(), *protoc, *check); err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

// errStale reports that -check found differences (already listed on stderr).
var errStale = errors.New("generated files are stale; run: go run ./tools/protogen")

func run(ctx context.Context, protoc string, check bool) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if err := checkProtocVersion(ctx, protoc); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "protogen-")
	if err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	if err := generate(ctx, root, protoc, tmp); err != nil {
		return err
	}
	fresh, err := readGenerated(tmp)
	if err != nil {
		return fmt.Errorf("read fresh output: %w", err)
	}
	committed, err := readGenerated(filepath.Join(root, protoDir))
	if err != nil {
		return fmt.Errorf("read committed output: %w", err)
	}
	changes := diff(committed, fresh)
	if check {
		for _, c := range changes {
			fmt.Fprintf(os.Stderr, "%s %s\n", c.kind, filepath.Join(protoDir, c.path))
		}
		if len(changes) > 0 {
			return errStale
		}
		return nil
	}
	return apply(filepath.Join(root, protoDir), fresh, changes)
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

func checkProtocVersion(ctx context.Context, protoc string) error {
	out, err := exec.CommandContext(ctx, protoc, "--version").Output()
	if err != nil {
		return fmt.Errorf("run %s --version: %w", protoc, err)
	}
	if got := strings.TrimSpace(string(out)); got != wantProtoc {
		return fmt.Errorf("protoc is %q, want %q (Debian's protobuf-compiler); other versions change the output", got, wantProtoc)
	}
	return nil
}

// generate runs protoc once over every .proto file so the descriptor set holds them all.
func generate(ctx context.Context, root, protoc, out string) error {
	goPlugin, err := toolPath(ctx, root, "protoc-gen-go")
	if err != nil {
		return err
	}
	grpcPlugin, err := toolPath(ctx, root, "protoc-gen-go-grpc")
	if err != nil {
		return err
	}
	protos, err := findProtos(filepath.Join(root, protoDir))
	if err != nil {
		return err
	}
	if len(protos) == 0 {
		return fmt.Errorf("no .proto files under %s", protoDir)
	}
	if err := os.MkdirAll(filepath.Join(out, filepath.Dir(descriptorFile)), 0o755); err != nil {
		return fmt.Errorf("create descriptor directory: %w", err)
	}
	args := []string{
		"--proto_path=" + filepath.Join(root, protoDir),
		"--plugin=protoc-gen-go=" + goPlugin,
		"--plugin=protoc-gen-go-grpc=" + grpcPlugin,
		"--go_out=" + out,
		"--go_opt=paths=source_relative",
		"--go-grpc_out=" + out,
		"--go-grpc_opt=paths=source_relative",
		"--descriptor_set_out=" + filepath.Join(out, descriptorFile),
		"--include_source_info",
		"--include_imports",
	}
	cmd := exec.CommandContext(ctx, protoc, append(args, protos...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("protoc: %w\n%s", err, stderr.Bytes())
	}
	return nil
}

// toolPath returns the binary of a `tool` directive of go.mod, built at its pinned version.
func toolPath(ctx context.Context, root, name string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", name)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", name, err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
}

// findProtos lists the .proto files under dir, relative to it, in a stable order.
func findProtos(dir string) ([]string, error) {
	var protos []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".proto") {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			protos = append(protos, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list .proto files: %w", err)
	}
	slices.Sort(protos)
	return protos, nil
}

// isGenerated reports whether a path (relative to the proto root) is protogen output.
func isGenerated(rel string) bool {
	return rel == descriptorFile || strings.HasSuffix(rel, ".pb.go")
}

// readGenerated maps every generated file under dir (relative path) to its content.
func readGenerated(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !isGenerated(rel) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[rel] = b
		return nil
	})
	return files, err
}

// change is one generated file that differs between the tree and a fresh run.
type change struct {
	kind string // "stale", "missing" or "orphaned"
	path string // relative to the proto root
}

func diff(committed, fresh map[string][]byte) []change {
	var changes []change
	for path, b := range fresh {
		old, ok := committed[path]
		switch {
		case !ok:
			changes = append(changes, change{"missing", path})
		case !bytes.Equal(old, b):
			changes = append(changes, change{"stale", path})
		}
	}
	for path := range committed {
		if _, ok := fresh[path]; !ok {
			changes = append(changes, change{"orphaned", path})
		}
	}
	slices.SortFunc(changes, func(a, b change) int { return strings.Compare(a.path, b.path) })
	return changes
}

// apply brings dir in line with fresh: writes missing and stale files, deletes orphaned ones.
func apply(dir string, fresh map[string][]byte, changes []change) error {
	for _, c := range changes {
		path := filepath.Join(dir, filepath.FromSlash(c.path))
		if c.kind == "orphaned" {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("delete orphaned %s: %w", c.path, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", c.path, err)
		}
		if err := os.WriteFile(path, fresh[c.path], 0o644); err != nil {
			return fmt.Errorf("write %s: %w", c.path, err)
		}
		fmt.Printf("wrote %s\n", filepath.Join(protoDir, c.path))
	}
	return nil
}
