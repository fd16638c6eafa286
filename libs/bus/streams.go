package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Subjects, streams and buckets between the messaging service and the presence and
// notification services (proto/guardyn/events/v1/events.proto).
const (
	// SubjectReceiveStreams carries ReceiveStreams: which devices hold a Receive stream open
	// (core NATS; a lost report costs at most one heartbeat interval).
	SubjectReceiveStreams = "guardyn.presence.streams"

	// SubjectDeliveryNoticePrefix + ".<user>.<device>" carries a DeliveryNotice, captured by
	// StreamNotify. One subject per device lets the stream keep only the latest notice of
	// each device, which coalesces a burst of messages into one push.
	SubjectDeliveryNoticePrefix = "guardyn.notify.delivery"
	// SubjectDeliveryNotices matches every device's notices.
	SubjectDeliveryNotices = SubjectDeliveryNoticePrefix + ".>"
	// StreamNotify is the JetStream stream of delivery notices the notification service
	// consumes.
	StreamNotify = "GUARDYN_NOTIFY"

	// BucketPresence is the JetStream KV bucket of online devices: one key per device,
	// expiring PresenceTTL after its last heartbeat.
	BucketPresence = "guardyn_presence"
)

// Presence timing. A device is online for PresenceTTL after each heartbeat; clients and
// messaging instances (for open Receive streams) heartbeat every PresenceHeartbeat, so one
// lost heartbeat never makes a device flicker offline.
const (
	PresenceTTL       = 60 * time.Second
	PresenceHeartbeat = 20 * time.Second
)

// NotifyMaxBytes bounds StreamNotify: a notice takes about 100 bytes stored and the stream
// keeps one per device, so this holds a million offline devices.
const NotifyMaxBytes = 128 << 20

// DeliveryNoticeSubject is the notice subject of one device.
func DeliveryNoticeSubject(userID string, deviceID uint32) (string, error) {
	s, err := DeliverSubject(userID, deviceID)
	if err != nil {
		return "", err
	}
	return SubjectDeliveryNoticePrefix + s[len(SubjectDeliverPrefix):], nil
}

// EnsureNotify creates StreamNotify: the latest notice per device, kept for an hour (a push
// later than that wakes nobody usefully), in memory because a lost notice costs a push, not a
// message: the message itself is in the device's inbox.
func (b *Bus) EnsureNotify(ctx context.Context) error {
	return b.EnsureStream(ctx, jetstream.StreamConfig{
		Name:              StreamNotify,
		Subjects:          []string{SubjectDeliveryNotices},
		Storage:           jetstream.MemoryStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: 1,
		MaxAge:            time.Hour,
		MaxBytes:          NotifyMaxBytes,
		Discard:           jetstream.DiscardOld,
	})
}

// PresenceMaxBytes bounds BucketPresence; a device's entry takes about 150 bytes.
const PresenceMaxBytes = 256 << 20

// PresenceBucket creates or opens BucketPresence: in memory (presence is rebuilt by the next
// heartbeats after a restart), one value per key, each expiring PresenceTTL after it was
// written (ttl; 0 means PresenceTTL), with a marker so that watchers learn of the expiry.
func (b *Bus) PresenceBucket(ctx context.Context, ttl time.Duration) (jetstream.KeyValue, error) {
	if ttl <= 0 {
		ttl = PresenceTTL
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         BucketPresence,
		Description:    "online devices; keys expire when heartbeats stop",
		History:        1,
		TTL:            ttl,
		LimitMarkerTTL: ttl,
		MaxBytes:       PresenceMaxBytes,
		Storage:        jetstream.MemoryStorage,
		Replicas:       b.Replicas(),
	})
	if err != nil {
		return nil, fmt.Errorf("presence bucket: %w", err)
	}
	return kv, nil
}
