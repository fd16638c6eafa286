package messaging

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// BusDirectory asks the auth service for device lists over NATS request/reply and caches
// them. Entries are dropped when the auth service announces a change, and expire after a
// TTL in case such an announcement was missed.
type BusDirectory struct {
	nc      *nats.Conn
	ttl     time.Duration
	timeout time.Duration
	now     func() time.Time
	sub     *nats.Subscription

	mu    sync.RWMutex
	cache map[string]dirEntry
}

type dirEntry struct {
	devices []uint32
	found   bool
	at      time.Time
}

// DefaultDirectoryTTL bounds how long a device list is trusted without a change event.
const DefaultDirectoryTTL = 30 * time.Second

// maxDirectoryEntries bounds the cache; beyond it the cache starts over.
const maxDirectoryEntries = 1 << 16

// NewBusDirectory subscribes to device-list changes; Close unsubscribes.
func NewBusDirectory(nc *nats.Conn, ttl time.Duration) (*BusDirectory, error) {
	if ttl <= 0 {
		ttl = DefaultDirectoryTTL
	}
	d := &BusDirectory{nc: nc, ttl: ttl, timeout: 5 * time.Second, now: time.Now, cache: make(map[string]dirEntry)}
	sub, err := nc.Subscribe(bus.SubjectDevicesChanged, func(m *nats.Msg) {
		var ev eventsv1.DevicesChanged
		if proto.Unmarshal(m.Data, &ev) == nil {
			d.Forget(ev.GetUserId())
		}
	})
	if err != nil {
		return nil, fmt.Errorf("messaging: subscribe to device changes: %w", err)
	}
	d.sub = sub
	return d, nil
}

// Close stops listening for changes.
func (d *BusDirectory) Close() error { return d.sub.Unsubscribe() }

// Forget drops the cached device list of a user.
func (d *BusDirectory) Forget(userID string) {
	d.mu.Lock()
	delete(d.cache, userID)
	d.mu.Unlock()
}

// Devices implements Directory.
func (d *BusDirectory) Devices(ctx context.Context, userID string) ([]uint32, bool, error) {
	d.mu.RLock()
	e, ok := d.cache[userID]
	d.mu.RUnlock()
	if ok && d.now().Sub(e.at) < d.ttl {
		return e.devices, e.found, nil
	}
	req, err := proto.Marshal(&eventsv1.DeviceListRequest{UserId: userID})
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	msg, err := d.nc.RequestWithContext(ctx, bus.SubjectDirectoryDevices, req)
	if err != nil {
		return nil, false, fmt.Errorf("device directory request: %w", err)
	}
	var resp eventsv1.DeviceListResponse
	if err := proto.Unmarshal(msg.Data, &resp); err != nil {
		return nil, false, fmt.Errorf("device directory reply: %w", err)
	}
	if resp.GetError() != "" {
		return nil, false, errors.New("device directory: " + resp.GetError())
	}
	e = dirEntry{devices: resp.GetDeviceIds(), found: resp.GetFound(), at: d.now()}
	d.mu.Lock()
	if len(d.cache) >= maxDirectoryEntries {
		clear(d.cache)
	}
	d.cache[userID] = e
	d.mu.Unlock()
	return e.devices, e.found, nil
}

// IsDeviceRevoked implements authn.Revocations: a device missing from its account's
// current list is revoked. When the directory cannot answer, access is refused.
func (d *BusDirectory) IsDeviceRevoked(ctx context.Context, userID string, deviceID uint32) bool {
	devs, found, err := d.Devices(ctx, userID)
	if err != nil || !found {
		return true
	}
	for _, id := range devs {
		if id == deviceID {
			return false
		}
	}
	return true
}
