// Package presencev1 is the generated Go code (messages and gRPC stubs) of the guardyn.presence.v1 API
// defined in presence.proto; docs/api.md describes its conventions. Regenerate with
// go run ./tools/protogen; do not edit the *.pb.go files.
package presencev1
