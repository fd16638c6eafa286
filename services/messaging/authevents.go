package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// Retry delays of a failed auth event: the first, and the most it grows to.
const (
	authEventRetry    = 250 * time.Millisecond
	authEventMaxRetry = 30 * time.Second
)

// ConsumeAuthEvents deletes the inboxes of removed devices and deleted accounts, and ends
// their Receive streams, from the auth service's durable event stream. The durable
// consumer resumes where it stopped, so a messaging restart misses nothing. Call Stop on
// the returned ConsumeContext to stop consuming.
func (s *Server) ConsumeAuthEvents(ctx context.Context, b *bus.Bus) (jetstream.ConsumeContext, error) {
	if err := b.EnsureAuthEvents(ctx); err != nil {
		return nil, fmt.Errorf("messaging: %w", err)
	}
	// No MaxDeliver: a removal must take effect however long the store is down, so a
	// failing event is retried for ever, ever more rarely (authEventRetry doubling up to
	// authEventMaxRetry), instead of in a tight loop.
	cons, err := b.JetStream().CreateOrUpdateConsumer(ctx, bus.StreamAuthEvents, jetstream.ConsumerConfig{
		Durable:        "messaging",
		FilterSubjects: []string{bus.SubjectDeviceRemoved, bus.SubjectAccountDeleted},
		AckPolicy:      jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("messaging: auth event consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := s.handleAuthEvent(ctx, m.Subject(), m.Data()); err != nil {
			s.log.Warn("messaging: auth event failed; will be redelivered", "subject", m.Subject(), "err", err)
			if err := bus.NakWithBackoff(m, authEventRetry, authEventMaxRetry); err != nil {
				s.log.Warn("messaging: auth event nak failed; redelivered after the ack wait", "err", err)
			}
			return
		}
		_ = m.Ack()
	})
	if err != nil {
		return nil, fmt.Errorf("messaging: consume auth events: %w", err)
	}
	return cc, nil
}

// handleAuthEvent applies one event; malformed events are dropped (acked) since a retry
// cannot fix them.
func (s *Server) handleAuthEvent(ctx context.Context, subject string, data []byte) error {
	var devices []uint32
	var user string
	switch subject {
	case bus.SubjectDeviceRemoved:
		var ev eventsv1.DeviceRemoved
		if proto.Unmarshal(data, &ev) != nil {
			return nil
		}
		user, devices = ev.GetUserId(), []uint32{ev.GetDeviceId()}
	case bus.SubjectAccountDeleted:
		var ev eventsv1.AccountDeleted
		if proto.Unmarshal(data, &ev) != nil {
			return nil
		}
		user, devices = ev.GetUserId(), ev.GetDeviceIds()
	default:
		return nil
	}
	if dir, ok := s.dir.(interface{ Forget(string) }); ok {
		dir.Forget(user)
	}
	// End the streams first: deleting a large inbox takes a while, and a removed device
	// must not keep receiving meanwhile.
	for _, d := range devices {
		s.publish(ctx, user, d, &eventsv1.LiveEvent{Event: &eventsv1.LiveEvent_Removed{Removed: &eventsv1.DeviceRemoved{UserId: user, DeviceId: d}}})
	}
	for _, d := range devices {
		if err := s.inboxes.DeleteInbox(ctx, inboxOf(user, d)); err != nil {
			return err
		}
	}
	return s.proposeRemovals(ctx, user, devices)
}

// ConsumePreKeyNotices tells devices on their Receive stream that their one-time prekeys
// are running out (the auth service's PreKeysLow events), so they replenish without
// polling. A device connected to no instance misses the notice; it checks its counts when
// it next connects, as clients do when they start listening. Call Stop on the returned
// Consumer to stop consuming.
func (s *Server) ConsumePreKeyNotices(ctx context.Context, b *bus.Bus) (*bus.Consumer, error) {
	if err := b.EnsureAuthEvents(ctx); err != nil {
		return nil, fmt.Errorf("messaging: %w", err)
	}
	c, err := bus.Consume(ctx, b, bus.ConsumerConfig{
		Stream: bus.StreamAuthEvents, Durable: "messaging-prekeys", FilterSubject: bus.SubjectPrekeysLow,
		RetryDelay: authEventRetry, MaxRetryDelay: authEventMaxRetry,
		// Notices stored before the consumer existed (the stream kept them unconsumed for
		// up to 30 days) are stale: skip them rather than send every device a burst.
		OnlyNew: true,
	}, decodePreKeysLow, func(ctx context.Context, ev *eventsv1.PreKeysLow) bool {
		s.publish(ctx, ev.GetUserId(), ev.GetDeviceId(), &eventsv1.LiveEvent{Event: &eventsv1.LiveEvent_PrekeysLow{PrekeysLow: &messagingv1.PreKeysLow{
			OneTimeEcPrekeys: ev.GetOneTimeEcPrekeys(), OneTimeKemPrekeys: ev.GetOneTimeKemPrekeys(),
		}}})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("messaging: prekey notices: %w", err)
	}
	return c, nil
}

// decodePreKeysLow parses a PreKeysLow event; one naming no device is malformed.
func decodePreKeysLow(data []byte) (*eventsv1.PreKeysLow, error) {
	var ev eventsv1.PreKeysLow
	if err := proto.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("prekeys low event: %w", err)
	}
	if ev.GetUserId() == "" || ev.GetDeviceId() == 0 {
		return nil, errors.New("prekeys low event: no device")
	}
	return &ev, nil
}
