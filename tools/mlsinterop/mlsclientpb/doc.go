// Package mlsclientpb is the generated Go code (messages and gRPC stubs) of
// the MLS working group's MLSClient interop service, from mls_client.proto
// (copied byte for byte, see SOURCE.md). Regenerate with
// go run ./tools/mlsinterop/internal/pbgen; do not edit the *.pb.go files.
package mlsclientpb
