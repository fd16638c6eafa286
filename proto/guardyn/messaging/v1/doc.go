// Package messagingv1 is the generated Go code (messages and gRPC stubs) of the guardyn.messaging.v1 API
// defined in messaging.proto; docs/api.md describes its conventions. Regenerate with
// go run ./tools/protogen; do not edit the *.pb.go files.
package messagingv1
