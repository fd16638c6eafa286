// Package buildinfo holds the version and commit a release build stamps
// into every binary.
//
// The release tool (release/, see docs/release.md) sets both with
// `-ldflags -X github.com/guardyn/guardyn/libs/buildinfo.Version=v0.3.0 -X
// …Commit=<hash>`; a plain `go build` leaves the defaults. They are
// variables only because the linker's -X flag can set nothing else; nothing
// may assign them at run time.
package buildinfo

// Version is the release's semantic version, "devel" outside a release.
var Version = "devel"

// Commit is the full source commit of a release build, "unknown" outside one.
var Commit = "unknown"
