package presence

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// view is this instance's picture of the presence bucket, kept current by a watch of the
// whole bucket, and the local watches it notifies. Users are keyed by their escaped token
// (bus.EscapeToken), as bucket keys are.
type view struct {
	mu    sync.RWMutex
	users map[string]*userDevices
	// watches by watched user token, and by viewer (for privacy changes).
	watched  map[string]map[*watch]struct{}
	byViewer map[string]map[*watch]struct{}
	// offline receives the users whose last device went offline, for the last-seen writer.
	offline func(token string, at time.Time)
}

// userDevices is what the view knows of one account.
type userDevices struct {
	devices map[uint32]deviceEntry
	// lastSeen is set when the last device went offline, until the last-seen writer has
	// stored it.
	lastSeen time.Time
}

type deviceEntry struct {
	rec record
	rev uint64
}

// account is an account's presence as the view computes it.
type account struct {
	status presencev1.PresenceStatus // OFFLINE when no device is online
	sealed []byte
	// lastSeen: for an online account its newest heartbeat; otherwise what the view knows
	// of its going offline (zero: ask the store).
	lastSeen time.Time
}

func newView(offline func(string, time.Time)) *view {
	return &view{
		users:    make(map[string]*userDevices),
		watched:  make(map[string]map[*watch]struct{}),
		byViewer: make(map[string]map[*watch]struct{}),
		offline:  offline,
	}
}

// apply takes one update of the bucket watch.
func (v *view) apply(e jetstream.KeyValueEntry) {
	token, device, ok := parseDeviceKey(e.Key())
	if !ok {
		return
	}
	var rec record
	put := e.Operation() == jetstream.KeyValuePut
	if put {
		var err error
		if rec, err = decodeRecord(e.Value()); err != nil {
			// Not written by a presence service: treat the device as gone.
			put = false
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	u := v.users[token]
	before := v.accountLocked(u)
	var at time.Time // when the device went offline, if it did
	switch {
	case put:
		if u == nil {
			u = &userDevices{devices: make(map[uint32]deviceEntry, 1)}
			v.users[token] = u
		}
		u.devices[device] = deviceEntry{rec: rec, rev: e.Revision()}
		at = rec.updated
	case u != nil:
		old, had := u.devices[device]
		if !had {
			return
		}
		delete(u.devices, device)
		// Expired keys went offline at their last heartbeat; deleted ones now.
		at = e.Created()
		if e.Operation() == jetstream.KeyValuePurge || at.IsZero() {
			at = old.rec.updated
		}
	default:
		return
	}
	after := v.accountLocked(u)
	if before.status != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE && after.status == presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
		u.lastSeen = at
		after.lastSeen = at
		if v.offline != nil {
			v.offline(token, at)
		}
	}
	if !sameAccount(before, after) {
		for w := range v.watched[token] {
			w.mark(token)
		}
	}
}

// stored tells the view that the last seen of token is in the store, so it may forget an
// account with no device online.
func (v *view) stored(token string, at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if u := v.users[token]; u != nil && len(u.devices) == 0 && !u.lastSeen.After(at) {
		delete(v.users, token)
	}
}

func (v *view) account(token string) account {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.accountLocked(v.users[token])
}

func (v *view) accountLocked(u *userDevices) account {
	a := account{status: presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE}
	if u == nil {
		return a
	}
	a.lastSeen = u.lastSeen
	var best record
	for _, d := range u.devices {
		if d.rec.updated.After(a.lastSeen) && availability(d.rec.status) > 0 {
			a.lastSeen = d.rec.updated
		}
		if availability(d.rec.status) > availability(best.status) ||
			availability(d.rec.status) == availability(best.status) && d.rec.updated.After(best.updated) {
			best = d.rec
		}
	}
	if availability(best.status) > 0 {
		a.status, a.sealed = best.status, best.sealed
	}
	return a
}

func sameAccount(a, b account) bool {
	return a.status == b.status && string(a.sealed) == string(b.sealed)
}

// device returns a device's current record and its revision.
func (v *view) device(token string, device uint32) (deviceEntry, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if u := v.users[token]; u != nil {
		d, ok := u.devices[device]
		return d, ok
	}
	return deviceEntry{}, false
}

// online counts the devices the view holds, for metrics and tests.
func (v *view) online() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, u := range v.users {
		n += len(u.devices)
	}
	return n
}

// add registers w unless its viewer already has max watches here.
func (v *view) add(w *watch, max int) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.byViewer[w.viewer]) >= max {
		return false
	}
	for token := range w.users {
		set := v.watched[token]
		if set == nil {
			set = make(map[*watch]struct{})
			v.watched[token] = set
		}
		set[w] = struct{}{}
	}
	set := v.byViewer[w.viewer]
	if set == nil {
		set = make(map[*watch]struct{})
		v.byViewer[w.viewer] = set
	}
	set[w] = struct{}{}
	return true
}

func (v *view) remove(w *watch) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for token := range w.users {
		delete(v.watched[token], w)
		if len(v.watched[token]) == 0 {
			delete(v.watched, token)
		}
	}
	delete(v.byViewer[w.viewer], w)
	if len(v.byViewer[w.viewer]) == 0 {
		delete(v.byViewer, w.viewer)
	}
}

// privacyChanged re-evaluates every watch the change of user's privacy may affect: those
// watching user, and user's own (hiding is symmetric).
func (v *view) privacyChanged(userID, token string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for w := range v.watched[token] {
		w.mark(token)
	}
	for w := range v.byViewer[userID] {
		w.markAll()
	}
}

// watch is one WatchPresence stream: the accounts it names and those whose presence it
// has yet to send. Changes coalesce: a burst of changes of one account sends its latest
// presence once.
type watch struct {
	viewer string
	users  map[string]string // token → user id as requested

	mu      sync.Mutex
	pending map[string]struct{}
	signal  chan struct{}
}

func newWatch(viewer string, users map[string]string) *watch {
	return &watch{viewer: viewer, users: users, pending: make(map[string]struct{}, len(users)), signal: make(chan struct{}, 1)}
}

func (w *watch) mark(token string) {
	w.mu.Lock()
	w.pending[token] = struct{}{}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watch) markAll() {
	w.mu.Lock()
	for token := range w.users {
		w.pending[token] = struct{}{}
	}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// take returns and clears the pending accounts.
func (w *watch) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.pending))
	for token := range w.pending {
		out = append(out, token)
	}
	clear(w.pending)
	return out
}
