// Command gazellerepos prints the gazelle repository configuration for the
// go.mod in the current directory: the go_repository names go_deps gives
// each requirement, so that a gazelle run outside Bazel (`gazelle
// -repo_config`) resolves imports exactly as `bazel run //:gazelle` does.
// See https://github.com/bazel-contrib/bazel-gazelle/blob/master/extensions.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/guardyn/guardyn/tools/repocheck/bzlmod"
)

func main() {
	m, err := bzlmod.ReadGoMod(context.Background(), ".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gazellerepos:", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(bzlmod.RepoConfig(m)); err != nil {
		fmt.Fprintln(os.Stderr, "gazellerepos:", err)
		os.Exit(1)
	}
}
