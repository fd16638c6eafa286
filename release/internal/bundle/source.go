package bundle

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Source describes the product checkout a release is built from.
type Source struct {
	Root   string    // the repository's top directory
	Commit string    // HEAD, full hash
	Time   time.Time // HEAD's commit time: SOURCE_DATE_EPOCH
	Dirty  bool      // uncommitted changes (untracked files included)
}

// ReadSource asks git about the checkout at dir.
func ReadSource(ctx context.Context, dir string) (Source, error) {
	root, err := git(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return Source{}, fmt.Errorf("source %s is not a git checkout: %w", dir, err)
	}
	s := Source{Root: root}
	if s.Commit, err = git(ctx, root, "rev-parse", "HEAD"); err != nil {
		return Source{}, err
	}
	ct, err := git(ctx, root, "log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return Source{}, err
	}
	epoch, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return Source{}, fmt.Errorf("source: commit time %q: %w", ct, err)
	}
	s.Time = time.Unix(epoch, 0).UTC()
	status, err := git(ctx, root, "status", "--porcelain", "--untracked-files=normal")
	if err != nil {
		return Source{}, err
	}
	s.Dirty = status != ""
	return s, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
