// Package commonv1 is the generated Go code (messages and gRPC stubs) of the guardyn.common.v1 API
// defined in common.proto; docs/api.md describes its conventions. Regenerate with
// go run ./tools/protogen; do not edit the *.pb.go files.
package commonv1
