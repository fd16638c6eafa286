package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// BusEvents publishes Events on NATS: removals, deletions and low-prekey notices go to the
// durable JetStream stream (consumers must not miss them), device-list changes go out as
// core NATS messages that only invalidate caches.
type BusEvents struct {
	nc *nats.Conn
	b  *bus.Bus
}

// NewBusEvents creates the auth event stream if needed and returns a publisher.
func NewBusEvents(ctx context.Context, b *bus.Bus) (*BusEvents, error) {
	if err := b.EnsureAuthEvents(ctx); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return &BusEvents{nc: b.Conn(), b: b}, nil
}

func (e *BusEvents) persist(ctx context.Context, subject string, m proto.Message) error {
	data, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	// Through the bus, so the event carries the trace of the call that caused it.
	return e.b.Publish(ctx, subject, data)
}

// DevicesChanged implements Events.
func (e *BusEvents) DevicesChanged(_ context.Context, userID string) error {
	data, err := proto.Marshal(&eventsv1.DevicesChanged{UserId: userID})
	if err != nil {
		return err
	}
	return e.nc.Publish(bus.SubjectDevicesChanged, data)
}

// DeviceRemoved implements Events.
func (e *BusEvents) DeviceRemoved(ctx context.Context, userID string, deviceID uint32) error {
	return e.persist(ctx, bus.SubjectDeviceRemoved, &eventsv1.DeviceRemoved{UserId: userID, DeviceId: deviceID})
}

// AccountDeleted implements Events.
func (e *BusEvents) AccountDeleted(ctx context.Context, userID string, deviceIDs []uint32) error {
	return e.persist(ctx, bus.SubjectAccountDeleted, &eventsv1.AccountDeleted{UserId: userID, DeviceIds: deviceIDs})
}

// PreKeysLow implements Events.
func (e *BusEvents) PreKeysLow(ctx context.Context, userID string, deviceID uint32, ecLeft, kemLeft int) error {
	return e.persist(ctx, bus.SubjectPrekeysLow, &eventsv1.PreKeysLow{
		UserId: userID, DeviceId: deviceID, OneTimeEcPrekeys: uint32(ecLeft), OneTimeKemPrekeys: uint32(kemLeft),
	})
}

// ServeDirectory answers device-list requests from other services (the messaging service
// checks every send against the recipient's current devices) until the subscription is
// drained.
func (s *Server) ServeDirectory(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.QueueSubscribe(bus.SubjectDirectoryDevices, "auth", func(m *nats.Msg) {
		var req eventsv1.DeviceListRequest
		resp := &eventsv1.DeviceListResponse{}
		if err := proto.Unmarshal(m.Data, &req); err != nil || req.GetUserId() == "" || len(req.GetUserId()) > 64 {
			resp.Error = "malformed device list request"
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ids, err := s.Devices(ctx, req.GetUserId())
			cancel()
			switch {
			case err != nil:
				s.log.Error("auth: directory lookup failed", slog.Any("err", err))
				resp.Error = "directory lookup failed"
			default:
				resp.Found, resp.DeviceIds = len(ids) > 0, ids
			}
		}
		data, err := proto.Marshal(resp)
		if err == nil {
			err = m.Respond(data)
		}
		if err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
			s.log.Warn("auth: directory reply failed", slog.Any("err", err))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("auth: serve directory: %w", err)
	}
	return sub, nil
}
