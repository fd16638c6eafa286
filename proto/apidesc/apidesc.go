// Package apidesc embeds the descriptor set of every Guardyn API, with source info (comments), so
// tests and services can read the proto comments (for example the field limits of docs/api.md)
// without protoc. go run ./tools/protogen rewrites descriptor.binpb.
package apidesc

import (
	_ "embed"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

//go:embed descriptor.binpb
var descriptorSet []byte

// FileDescriptorSet returns a fresh copy of the descriptor set: every proto file of the Guardyn
// APIs and their imports, with source code info.
func FileDescriptorSet() (*descriptorpb.FileDescriptorSet, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(descriptorSet, &set); err != nil {
		return nil, fmt.Errorf("decode embedded descriptor set: %w", err)
	}
	return &set, nil
}

// Files returns a registry built from the descriptor set. Its descriptors carry the proto
// comments (SourceLocations), unlike those registered by the generated packages.
func Files() (*protoregistry.Files, error) {
	set, err := FileDescriptorSet()
	if err != nil {
		return nil, err
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("build registry from embedded descriptor set: %w", err)
	}
	return files, nil
}
