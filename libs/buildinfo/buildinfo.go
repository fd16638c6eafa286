// Package buildinfo holds the version and commit a release build stamps
// into every binary.
//
// The release tool (release/, see docs/release.md) sets both with
// `-ldflags -X github.com/guardyn/guardyn/libs/buildinfo.Version=v0.3.0 -X
// …Commit=<hash>`; a plain `go build` leaves the defaults. They are
// variables only because the linker's -X flag can set nothing else; nothing
// may assign them at run time.
package buildinfo

import "github.com/prometheus/client_golang/prometheus"

// Version is the release's semantic version, "devel" outside a release.
var Version = "devel"

// Commit is the full source commit of a release build, "unknown" outside one.
var Commit = "unknown"

// Metric is the guardyn_build_info gauge: always 1, labelled with Version and
// Commit, so a deployment's metrics show what each binary runs.
func Metric() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "guardyn_build_info",
		Help:        "Always 1; the labels name the release version and source commit of this binary.",
		ConstLabels: prometheus.Labels{"version": Version, "commit": Commit},
	}, func() float64 { return 1 })
}
