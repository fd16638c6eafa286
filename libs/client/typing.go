package client

import (
	"sync"
	"time"

	"github.com/guardyn/guardyn/libs/client/content"
)

// maxTypingSkew bounds how far a typing indicator's Sent time may be from this device's clock,
// either way. Typing indicators are sealed to the device identity key without a ratchet
// session, so nothing else stops an envelope from being replayed while its sender certificate
// is valid (days): anything older than this is dropped, and a replay within it is caught by
// its ID. Two minutes leaves room for clocks that disagree a little.
const maxTypingSkew = 2 * time.Minute

// typingReplays remembers the IDs of typing indicators accepted within the last maxTypingSkew
// either way, so a replay inside the window is dropped too. It lives in memory: a process that
// restarts may show one replayed "typing" again, which is harmless.
type typingReplays struct {
	mu   sync.Mutex
	seen map[content.ID]time.Time // ID -> Sent
}

// accept reports whether a typing indicator with this id and sent time is fresh at now and not
// seen before, and records it.
func (r *typingReplays) accept(id content.ID, sent, now time.Time) bool {
	if sent.Before(now.Add(-maxTypingSkew)) || sent.After(now.Add(maxTypingSkew)) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, at := range r.seen {
		if at.Before(now.Add(-maxTypingSkew)) {
			delete(r.seen, k)
		}
	}
	if _, dup := r.seen[id]; dup {
		return false
	}
	if r.seen == nil {
		r.seen = make(map[content.ID]time.Time)
	}
	r.seen[id] = sent
	return true
}
