// Package mediav1 is the generated Go code (messages and gRPC stubs) of the guardyn.media.v1 API
// defined in media.proto; docs/api.md describes its conventions. Regenerate with
// go run ./tools/protogen; do not edit the *.pb.go files.
package mediav1
