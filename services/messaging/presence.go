package messaging

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// What the messaging service tells the presence and notification services
// (proto/guardyn/events/v1/events.proto): an open Receive stream is its device's presence
// heartbeat, so a connected client sends nothing extra, and a message stored for a device
// without a stream here is a DeliveryNotice, so the notification service may wake it. Both
// are core NATS publishes of a few bytes, off the path of devices that are connected.

// reportBatch bounds the devices of one ReceiveStreams report.
const reportBatch = 1000

// startStreamReports reports every open stream each bus.PresenceHeartbeat until Close.
func (s *Server) startStreamReports() {
	s.checked.Add(1)
	go s.reportStreams(bus.PresenceHeartbeat)
}

func (s *Server) reportStreams(interval time.Duration) {
	defer s.checked.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		var open []*commonv1.DeviceAddress
		for key := range s.hub.snapshot() {
			open = append(open, &commonv1.DeviceAddress{UserId: key.user, DeviceId: key.device})
			if len(open) == reportBatch {
				s.report(&eventsv1.ReceiveStreams{Open: open})
				open = nil
			}
		}
		if len(open) > 0 {
			s.report(&eventsv1.ReceiveStreams{Open: open})
		}
	}
}

func (s *Server) report(r *eventsv1.ReceiveStreams) {
	data, err := proto.Marshal(r)
	if err == nil {
		err = s.conn.Publish(bus.SubjectReceiveStreams, data)
	}
	if err != nil {
		s.log.Warn("messaging: report receive streams", "err", err)
	}
}

// streamOpened reports a new Receive stream at once, so the device shows online without
// waiting for the next round.
func (s *Server) streamOpened(key inboxKey) {
	s.report(&eventsv1.ReceiveStreams{Open: []*commonv1.DeviceAddress{{UserId: key.user, DeviceId: key.device}}})
}

// streamEnded detaches st and reports the device offline, unless a newer stream of the
// device took over.
func (s *Server) streamEnded(key inboxKey, st *liveStream) {
	s.hub.detach(key, st)
	if s.hub.get(key) == nil {
		s.report(&eventsv1.ReceiveStreams{Closed: []*commonv1.DeviceAddress{{UserId: key.user, DeviceId: key.device}}})
	}
}

// noticeIfAway publishes a DeliveryNotice for a stored delivery to a device with no Receive
// stream on this instance. Ephemeral signals are not stored and wake nobody.
func (s *Server) noticeIfAway(ctx context.Context, userID string, deviceID uint32, kind messagingv1.DeliveryKind) {
	if kind == messagingv1.DeliveryKind_DELIVERY_KIND_EPHEMERAL || s.hub.get(inboxKey{userID, deviceID}) != nil {
		return
	}
	subject, err := bus.DeliveryNoticeSubject(userID, deviceID)
	if err != nil {
		return
	}
	data, err := proto.Marshal(&eventsv1.DeliveryNotice{Device: &commonv1.DeviceAddress{UserId: userID, DeviceId: deviceID}})
	if err == nil {
		err = s.conn.Publish(subject, data)
	}
	if err != nil {
		s.log.WarnContext(ctx, "messaging: publish delivery notice", "err", err)
	}
}
