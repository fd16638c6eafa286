package auth

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/outbox"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// Events that other services must not miss (a lost DeviceRemoved would leave a removed
// device's inbox and stream alive) go through a transactional outbox in the auth store:
// the change and its event commit together, the event is published right after, and
// ReplayEvents publishes whatever a crash or a bus outage left behind until the bus
// acknowledges it. Cache invalidations (DevicesChanged) stay best effort: a lost one
// costs a stale cache entry until it expires.
//
//	auth/outbox/<unix nanos, hex>-<random> → kind byte, then the event in protobuf

// eventsPrefix is where the outbox keeps unpublished events.
const eventsPrefix = "auth/outbox/"

// eventLinger keeps a published event in the outbox for longer than JetStream's
// default sync interval (two minutes): after a power loss that took the bus's unsynced
// tail, the restarted service publishes it again. Subscribers are idempotent.
const eventLinger = 5 * time.Minute

// Kinds of outbox events; the first byte of an entry.
const (
	eventDeviceRemoved  = 1
	eventAccountDeleted = 2
)

func (s *Server) newEventOutbox() (*outbox.Outbox, error) {
	return outbox.New(outbox.Config{
		Store: s.store, Prefix: eventsPrefix, Handle: s.publishEvent,
		Linger: eventLinger, Now: s.now, Logger: s.log,
	})
}

// addEvent records an event in tx; it is published once tx commits. It returns the
// entry id for flushEvent, or "" when the service publishes no events.
func (s *Server) addEvent(tx kv.Tx, kind byte, ev proto.Message) (string, error) {
	if s.outbox == nil {
		return "", nil
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return "", err
	}
	id := fmt.Sprintf("%016x-%s", s.now().UnixNano(), newID(8))
	return id, s.outbox.Add(tx, id, append([]byte{kind}, data...))
}

// flushEvent publishes an event its transaction committed. A failure is logged, not
// returned: the change stands, and ReplayEvents publishes the event later.
func (s *Server) flushEvent(ctx context.Context, id string) {
	if id == "" {
		return
	}
	if err := s.outbox.Deliver(ctx, id); err != nil {
		s.log.WarnContext(ctx, "auth: publishing event failed; it stays in the outbox", "event", id, "err", err)
	}
}

// publishEvent is the outbox handler: it hands one stored event to Events, which
// returns once the bus acknowledged it.
func (s *Server) publishEvent(ctx context.Context, id string, payload []byte) error {
	if len(payload) == 0 {
		s.log.ErrorContext(ctx, "auth: dropping empty outbox event", "event", id)
		return nil
	}
	switch payload[0] {
	case eventDeviceRemoved:
		var ev eventsv1.DeviceRemoved
		if err := proto.Unmarshal(payload[1:], &ev); err != nil {
			s.log.ErrorContext(ctx, "auth: dropping undecodable outbox event", "event", id, "err", err)
			return nil
		}
		return s.events.DeviceRemoved(ctx, ev.GetUserId(), ev.GetDeviceId())
	case eventAccountDeleted:
		var ev eventsv1.AccountDeleted
		if err := proto.Unmarshal(payload[1:], &ev); err != nil {
			s.log.ErrorContext(ctx, "auth: dropping undecodable outbox event", "event", id, "err", err)
			return nil
		}
		return s.events.AccountDeleted(ctx, ev.GetUserId(), ev.GetDeviceIds())
	default:
		s.log.ErrorContext(ctx, "auth: dropping outbox event of unknown kind", "event", id, "kind", payload[0])
		return nil
	}
}

// ReplayEvents publishes the events in the outbox until ctx ends: those a crash or a
// bus outage left unpublished, and after a restart the recently published ones again.
// Run it once per process next to the service; it returns ctx's error.
func (s *Server) ReplayEvents(ctx context.Context) error {
	if s.outbox == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.outbox.Run(ctx)
}
