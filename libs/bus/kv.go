package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyValue creates or opens the JetStream KV bucket named bucket whose keys
// expire ttl after their last write (presence). Memory storage: the bucket is
// rebuilt from live clients after a restart.
func (b *Bus) KeyValue(ctx context.Context, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:  bucket,
		TTL:     ttl,
		Storage: jetstream.MemoryStorage,
		History: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", bucket, err)
	}
	return kv, nil
}
