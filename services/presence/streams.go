package presence

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// maxReportDevices bounds the devices of one ReceiveStreams report.
const maxReportDevices = 1000

// decodeReceiveStreams parses a report from a messaging instance.
func decodeReceiveStreams(b []byte) (*eventsv1.ReceiveStreams, error) {
	var r eventsv1.ReceiveStreams
	if err := proto.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if len(r.GetOpen()) > maxReportDevices || len(r.GetClosed()) > maxReportDevices {
		return nil, errors.New("receive streams report: too many devices")
	}
	return &r, nil
}

// onReceiveStreams refreshes the devices whose Receive stream is open and takes offline
// those whose stream ended. One instance of the queue group handles each report.
func (s *Server) onReceiveStreams(m *nats.Msg) {
	r, err := decodeReceiveStreams(m.Data)
	if err != nil {
		s.log.Warn("presence: malformed receive streams report dropped", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, d := range r.GetOpen() {
		if err := s.refresh(ctx, d.GetUserId(), d.GetDeviceId()); err != nil {
			s.log.Warn("presence: refresh from receive stream", "err", err)
		}
	}
	for _, d := range r.GetClosed() {
		key, err := deviceKey(d.GetUserId(), d.GetDeviceId())
		if err != nil {
			continue
		}
		if err := s.bucket.Delete(ctx, key); err != nil {
			s.log.Warn("presence: device offline after its receive stream", "err", err)
		}
	}
}

// Last seen values: unix seconds, 8 bytes big endian.
func encodeLastSeen(at time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(at.Unix()))
}

func decodeLastSeen(b []byte) (time.Time, error) {
	if len(b) != 8 {
		return time.Time{}, errors.New("malformed last seen")
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), 0), nil
}
