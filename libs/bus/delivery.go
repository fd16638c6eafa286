package bus

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// PublishWakeup tells a device's Receive stream that its inbox has new
// envelopes. payload is opaque to the bus: only what the server itself may
// hold (ids, sealed ciphertext), never anything a client decrypted. Core
// NATS: fire and forget.
func (b *Bus) PublishWakeup(userID string, deviceID uint32, payload []byte) error {
	subj, err := DeliverSubject(userID, deviceID)
	if err != nil {
		return err
	}
	if err := b.nc.Publish(subj, payload); err != nil {
		return fmt.Errorf("publish wake-up on %s: %w", subj, err)
	}
	return nil
}

// SubscribeWakeups calls fn with the payload of every wake-up for the device
// until the returned subscription is unsubscribed. fn runs on one goroutine
// per subscription and must not block for long: it should nudge the stream,
// not serve it.
func (b *Bus) SubscribeWakeups(userID string, deviceID uint32, fn func(payload []byte)) (*nats.Subscription, error) {
	subj, err := DeliverSubject(userID, deviceID)
	if err != nil {
		return nil, err
	}
	sub, err := b.nc.Subscribe(subj, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subj, err)
	}
	return sub, nil
}
