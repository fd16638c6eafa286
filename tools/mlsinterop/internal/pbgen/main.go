// Command pbgen regenerates mlsclientpb from the MLS working group's
// mls_client.proto the way tools/protogen regenerates the Guardyn APIs,
// with nothing but Go: the .proto is compiled in process by
// github.com/bufbuild/protocompile and the request protoc would send is
// handed to the protoc-gen-go and protoc-gen-go-grpc versions pinned by
// go.mod's tool directives. tools/protogen only walks proto/, and the
// working group's file names another Go package (go_package points at
// their repository), so the import path is overridden with an M option
// instead of editing the copied file.
//
// Usage, from the module root:
//
//	go run ./tools/mlsinterop/internal/pbgen          # rewrite the generated files
//	go run ./tools/mlsinterop/internal/pbgen -check   # exit 1 if they are stale (CI)
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/protoutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

const (
	pkgDir    = "tools/mlsinterop/mlsclientpb" // relative to the module root
	protoFile = "mls_client.proto"
	goPackage = "github.com/guardyn/guardyn/tools/mlsinterop/mlsclientpb;mlsclientpb"
)

// compilerVersion is what the plugins are told ran them, as in
// tools/protogen, so that the generated headers are stable.
var compilerVersion = &pluginpb.Version{Major: proto.Int32(3), Minor: proto.Int32(21), Patch: proto.Int32(12), Suffix: proto.String("")}

func main() {
	check := flag.Bool("check", false, "fail if a generated file differs, change nothing")
	flag.Parse()
	if err := run(context.Background(), *check); err != nil {
		fmt.Fprintln(os.Stderr, "pbgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, check bool) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	files, err := Generate(ctx, root)
	if err != nil {
		return err
	}
	dir := filepath.Join(root, pkgDir)
	stale := false
	for name, content := range files {
		path := filepath.Join(dir, name)
		old, err := os.ReadFile(path)
		if err == nil && bytes.Equal(old, content) {
			continue
		}
		if check {
			fmt.Fprintf(os.Stderr, "stale: %s\n", filepath.Join(pkgDir, name))
			stale = true
			continue
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote %s\n", filepath.Join(pkgDir, name))
	}
	if stale {
		return fmt.Errorf("generated files are stale; run: go run ./tools/mlsinterop/internal/pbgen")
	}
	return nil
}

// Generate compiles the proto and runs both plugins; it returns the
// generated files by name.
func Generate(ctx context.Context, root string) (map[string][]byte, error) {
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{filepath.Join(root, pkgDir)}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	linked, err := c.Compile(ctx, protoFile)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	fd := protoutil.ProtoFromFileDescriptor(linked[0])
	if fd.GetDependency() != nil {
		return nil, fmt.Errorf("%s imports %v; only a self-contained file is expected", protoFile, fd.GetDependency())
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate:  []string{protoFile},
		Parameter:       proto.String("paths=source_relative,M" + protoFile + "=" + goPackage),
		ProtoFile:       []*descriptorpb.FileDescriptorProto{fd},
		CompilerVersion: compilerVersion,
	}
	out := map[string][]byte{}
	for _, plugin := range []string{"protoc-gen-go", "protoc-gen-go-grpc"} {
		if err := runPlugin(ctx, root, plugin, req, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func runPlugin(ctx context.Context, root, name string, req *pluginpb.CodeGeneratorRequest, out map[string][]byte) error {
	tool := exec.CommandContext(ctx, "go", "tool", "-n", name)
	tool.Dir = root
	bin, err := tool.Output()
	if err != nil {
		return fmt.Errorf("build %s: %w", name, err)
	}
	in, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(bin)))
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run %s: %w\n%s", name, err, stderr.Bytes())
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return fmt.Errorf("decode %s response: %w", name, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("%s: %s", name, resp.GetError())
	}
	for _, f := range resp.File {
		if f.GetInsertionPoint() != "" {
			return fmt.Errorf("%s: insertion points are not supported", name)
		}
		out[f.GetName()] = []byte(f.GetContent())
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "GOMOD")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}
