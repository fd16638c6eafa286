// Package repocheck holds the repository's structural tests, run by `go test
// ./...`: the dependency rules of the design (docs/build.md and DESIGN.md's
// "Layout"), a package doc comment on every package, and the agreement of
// Bazel's MODULE.bazel with go.mod
// (https://github.com/bazel-contrib/bazel-gazelle/blob/master/extensions.md).
package repocheck
