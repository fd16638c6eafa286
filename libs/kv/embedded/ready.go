package embedded

import (
	"context"
	"fmt"

	"github.com/guardyn/guardyn/libs/kv"
)

// Ready reports whether the store can commit, for readiness probes. It runs an empty
// transaction through the single writer, so it fails when the store is closed, when
// commits fail (a failing disk) or when the writer does not reach it before ctx ends (a
// stuck writer). The empty transaction joins whatever group commit is under way; on an
// idle store it costs one small commit per probe.
func (s *Store) Ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &request{ctx: ctx, fn: func(kv.Tx) error { return nil }, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return kv.ErrClosed
	}
	select {
	case s.reqs <- req:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return fmt.Errorf("kv store: writer queue full: %w", ctx.Err())
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("kv store: commit: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kv store: no commit before the probe's deadline: %w", ctx.Err())
	}
}
