// Package eventsv1 is the generated Go code of guardyn.events.v1, the internal messages the
// services exchange over NATS (subjects listed in events.proto; docs/api.md). Regenerate with
// go run ./tools/protogen; do not edit the *.pb.go files.
package eventsv1
