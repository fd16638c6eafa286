package embedded

import (
	"context"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// Ready reports whether the store accepts writes, for readiness probes: after a failed
// write or sync it refuses every write until reopened, and so should the process stop
// receiving traffic. It does not block and does no I/O.
func (s *Store) Ready(context.Context) error {
	if s.isClosed() {
		return msgstore.ErrClosed
	}
	if p := s.broken.Load(); p != nil {
		return *p
	}
	return nil
}
