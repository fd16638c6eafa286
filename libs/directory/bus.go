package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// BusSource asks the auth service's directory responder over NATS request/reply
// (bus.SubjectDirectoryDevices).
type BusSource struct{ nc *nats.Conn }

// NewBusSource returns a Source that asks over nc.
func NewBusSource(nc *nats.Conn) *BusSource { return &BusSource{nc: nc} }

// Lookup implements Source with one request for all of userIDs. ctx bounds the request.
func (s *BusSource) Lookup(ctx context.Context, userIDs []string) ([]List, error) {
	req, err := proto.Marshal(&eventsv1.DeviceListRequest{UserIds: userIDs})
	if err != nil {
		return nil, fmt.Errorf("encode device list request: %w", err)
	}
	msg, err := s.nc.RequestWithContext(ctx, bus.SubjectDirectoryDevices, req)
	if err != nil {
		return nil, fmt.Errorf("device list request: %w", err)
	}
	return decodeReply(msg.Data, len(userIDs))
}

// decodeReply decodes the auth service's answer to a request for want users.
func decodeReply(data []byte, want int) ([]List, error) {
	var resp eventsv1.DeviceListResponse
	if err := proto.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("device list reply: %w", err)
	}
	if resp.GetError() != "" {
		return nil, errors.New("device list reply: " + resp.GetError())
	}
	if got := len(resp.GetLists()); got != want {
		// An auth service from before batches answers the (empty) user_id instead.
		return nil, fmt.Errorf("device list reply: %d lists for %d users", got, want)
	}
	out := make([]List, want)
	for i, l := range resp.GetLists() {
		out[i] = List{Devices: l.GetDeviceIds(), Found: l.GetFound()}
	}
	return out, nil
}

// Ready reports whether a directory responder (the auth service) answers, for readiness
// probes: without one no send can check its recipient's devices. It asks with an empty
// request, which a responder refuses at once without reading its store.
func (s *BusSource) Ready(ctx context.Context) error {
	if _, err := s.nc.RequestWithContext(ctx, bus.SubjectDirectoryDevices, nil); err != nil {
		return fmt.Errorf("device directory: %w", err)
	}
	return nil
}

// Subscribe forgets a user's cached devices whenever the auth service announces that
// they changed (bus.SubjectDevicesChanged), until the subscription is unsubscribed.
// Announcements are core NATS: one lost is covered by the TTL and, for removals, by the
// durable DeviceRemoved event whose consumers call Forget too.
func Subscribe(nc *nats.Conn, c *Client) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(bus.SubjectDevicesChanged, func(m *nats.Msg) {
		var ev eventsv1.DevicesChanged
		if proto.Unmarshal(m.Data, &ev) == nil && ev.GetUserId() != "" {
			c.Forget(ev.GetUserId())
		}
	})
	if err != nil {
		return nil, fmt.Errorf("directory: subscribe to device changes: %w", err)
	}
	return sub, nil
}
