package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyValueMaxBytes bounds every KV bucket (its backing stream), like every
// stream: about half a million presence entries.
const KeyValueMaxBytes = 64 << 20

// KeyValue creates or opens the JetStream KV bucket named bucket whose keys
// expire ttl after their last write (presence). Memory storage: the bucket is
// rebuilt from live clients after a restart. At KeyValueMaxBytes writes fail
// rather than evict live keys.
func (b *Bus) KeyValue(ctx context.Context, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   bucket,
		TTL:      ttl,
		Storage:  jetstream.MemoryStorage,
		History:  1,
		MaxBytes: KeyValueMaxBytes,
		Replicas: b.Replicas(),
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", bucket, err)
	}
	return kv, nil
}
