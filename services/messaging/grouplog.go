package messaging

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/msgstore"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// The group log: a group message, proposal or commit is stored ONCE, as an entry of its
// group's log, and every member device's inbox gets a small reference to it (a
// logNotice), not a copy of it. A 1000-device group therefore costs one body write and
// 1000 small notices per message; the Receive stream resolves each notice to the log
// entry when it reads the backlog, and live wake-ups carry the entry itself. A device's
// read position in the log is its queue of notices: it acknowledges a notice as it
// acknowledged a copy, so the at-least-once and ordering guarantees of the inbox hold
// unchanged (members see a group's entries in the order the service stored them).
//
// The log of a group is an inbox of the message store of its own (logInbox), and an
// entry is appended in the same Append call as its notices, ahead of them: one durable
// write and one fsync wait per send, not one in the kv store and one in the message
// store (the kv store's bbolt commit alone waited two fsyncs, docs/perf-groups.md). A
// reader never finds a notice without its entry: the store makes a call's messages
// durable and visible no later than those of the calls after it, and its crash recovery
// keeps a prefix of what was written, so a notice survives only with the entry before
// it. An entry expires with its notices (same expiry), which the store reclaims. An
// entry's id derives from its sender and idempotency key, so a retried send names the
// same entry and notices, which the store keeps once.

// kindLogNotice is the inbox kind of a logNotice, and kindLogEntry that of an entry in a
// group's log inbox; neither is a DeliveryKind, so an inbox entry written before the
// group log (a full encoded Delivery) is still told apart.
const (
	kindLogNotice msgstore.Kind = 0x80
	kindLogEntry  msgstore.Kind = 0x81
)

// groupLogUser owns the inboxes of the group logs. Their device ids are not numbers,
// so no device's inbox (inboxOf) is ever one of them, whatever the user id.
const groupLogUser = "msg-group-log"

// logInbox is the inbox that holds the log of group gid.
func logInbox(gid []byte) msgstore.Inbox {
	return msgstore.Inbox{UserID: groupLogUser, DeviceID: "g" + hex.EncodeToString(gid)}
}

// Versions of the two encodings; a decoder refuses any other. Notices of version 2
// named entries of the kv store, which no longer holds the log.
const (
	logRecordV2 = 2
	logNoticeV3 = 3
)

// logEntryID is the 16-byte id of one entry of the log.
type logEntryID [16]byte

// logRecord is one entry of a group log: what the members' Receive streams deliver.
type logRecord struct {
	Kind    messagingv1.DeliveryKind
	GroupID []byte
	Epoch   uint64
	At      time.Time
	Expiry  time.Time // whole seconds
	Payload []byte
}

// logNotice is what a member device's inbox holds for one log entry: the entry's id
// and its group, whose log holds it.
type logNotice struct {
	ID      logEntryID
	GroupID []byte
}

// Errors of the decoders; both wrap errBadLogEncoding.
var errBadLogEncoding = errors.New("messaging: malformed group log encoding")

// maxLogGroupID bounds the group id a record carries (the API allows 64 bytes).
const maxLogGroupID = 255

// logNoticeHeader is the size of a notice before its group id; maxLogNotice is the
// largest notice.
const (
	logNoticeHeader = 1 + 16
	maxLogNotice    = logNoticeHeader + maxLogGroupID
)

// logRecordHeader is the size of a record before its group id and payload.
const logRecordHeader = 2 + 8 + 8 + 8 + 1

// marshal encodes r: version, kind, epoch, time (Unix nanoseconds), expiry (Unix
// seconds), the group id with a one-byte length, then the payload to the end.
func (r *logRecord) marshal() ([]byte, error) {
	if len(r.GroupID) > maxLogGroupID || r.Kind < 0 || r.Kind > 0xff {
		return nil, fmt.Errorf("%w: group id of %d bytes, kind %d", errBadLogEncoding, len(r.GroupID), r.Kind)
	}
	b := make([]byte, 0, logRecordHeader+len(r.GroupID)+len(r.Payload))
	b = append(b, logRecordV2, byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, r.Epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expiry.Unix()))
	b = append(b, byte(len(r.GroupID)))
	b = append(b, r.GroupID...)
	return append(b, r.Payload...), nil
}

// parseLogRecord decodes a record written by marshal. It refuses unknown versions, short
// input, expiries out of range and group ids that run past the end; the payload may be
// empty.
func parseLogRecord(b []byte) (*logRecord, error) {
	const head = logRecordHeader
	if len(b) < head {
		return nil, fmt.Errorf("%w: record of %d bytes is shorter than its %d-byte header", errBadLogEncoding, len(b), head)
	}
	if b[0] != logRecordV2 {
		return nil, fmt.Errorf("%w: record version %d, want %d", errBadLogEncoding, b[0], logRecordV2)
	}
	exp := binary.BigEndian.Uint64(b[18:26])
	if exp > maxExpiry {
		return nil, fmt.Errorf("%w: expiry %d out of range", errBadLogEncoding, exp)
	}
	n := int(b[head-1])
	if len(b) < head+n {
		return nil, fmt.Errorf("%w: group id of %d bytes runs past the record's %d", errBadLogEncoding, n, len(b))
	}
	return &logRecord{
		Kind:    messagingv1.DeliveryKind(b[1]),
		Epoch:   binary.BigEndian.Uint64(b[2:10]),
		At:      time.Unix(0, int64(binary.BigEndian.Uint64(b[10:18]))).UTC(),
		Expiry:  time.Unix(int64(exp), 0).UTC(),
		GroupID: append([]byte(nil), b[head:head+n]...),
		Payload: append([]byte(nil), b[head+n:]...),
	}, nil
}

// maxExpiry bounds the expiry a record may carry: 20 decimal digits in the index key.
const maxExpiry = 1 << 62

// marshal encodes n: version, entry id, then the group id to the end.
func (n logNotice) marshal() []byte {
	b := make([]byte, 0, logNoticeHeader+len(n.GroupID))
	b = append(b, logNoticeV3)
	b = append(b, n.ID[:]...)
	return append(b, n.GroupID...)
}

// parseLogNotice decodes a notice written by marshal; anything but its version, a
// whole id and a group id of 1 to maxLogGroupID bytes is refused.
func parseLogNotice(b []byte) (logNotice, error) {
	if len(b) <= logNoticeHeader || len(b) > maxLogNotice {
		return logNotice{}, fmt.Errorf("%w: notice of %d bytes, want %d to %d", errBadLogEncoding, len(b), logNoticeHeader+1, maxLogNotice)
	}
	if b[0] != logNoticeV3 {
		return logNotice{}, fmt.Errorf("%w: notice version %d, want %d", errBadLogEncoding, b[0], logNoticeV3)
	}
	var n logNotice
	copy(n.ID[:], b[1:logNoticeHeader])
	n.GroupID = append([]byte(nil), b[logNoticeHeader:]...)
	return n, nil
}

// logID names the entry of one group delivery: like messageID without a recipient, so a
// retried send or a replayed fan-out names the same entry.
func logID(sender authn.Principal, scope, idempotencyKey []byte) logEntryID {
	h := sha256.New()
	h.Write([]byte("guardyn group log entry v1\x00"))
	for _, part := range [][]byte{[]byte(sender.UserID), scope, idempotencyKey} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(part))))
		h.Write(part)
	}
	h.Write(binary.BigEndian.AppendUint32(nil, sender.DeviceID))
	var id logEntryID
	copy(id[:], h.Sum(nil))
	return id
}

// logEntry returns the entry of d in its group's log, to be appended ahead of its
// notices; it expires with them.
func logEntry(id logEntryID, d *messagingv1.Delivery, now, expiry time.Time) (msgstore.Message, error) {
	b, err := (&logRecord{Kind: d.GetKind(), GroupID: d.GetGroupId(), Epoch: d.GetEpoch(), At: now, Expiry: expiry, Payload: d.GetPayload()}).marshal()
	if err != nil {
		return msgstore.Message{}, err
	}
	return msgstore.Message{Inbox: logInbox(d.GetGroupId()), ID: msgstore.ID(id), Kind: kindLogEntry, Body: b, Timestamp: now, Expiry: expiry}, nil
}

// storedDeliveries turns a page of inbox entries into the deliveries the client sees,
// resolving each log notice to its entry in the group's log. An entry that cannot be
// turned into a delivery (undecodable, or its log entry gone) is nil in the result and
// logged, as is every entry skip marks (already in flight: nothing to resolve).
//
// A notice is a few dozen bytes in the inbox but stands for a payload of up to the
// message limit, so the inbox read's byte budget does not bound what resolving a page
// costs: resolving stops once the deliveries reach budget bytes (after at least one),
// and n says how many entries of msgs were looked at. The caller must not use the
// entries past n.
func (s *Server) storedDeliveries(ctx context.Context, msgs []msgstore.Message, skip []bool, budget int) (out []*messagingv1.Delivery, n int, err error) {
	out = make([]*messagingv1.Delivery, len(msgs))
	total := 0
	for i, m := range msgs {
		if skip != nil && skip[i] {
			continue
		}
		if total >= budget {
			return out, i, nil
		}
		var d *messagingv1.Delivery
		if m.Kind == kindLogNotice {
			if d, err = s.resolveNotice(ctx, m); err != nil {
				return nil, 0, err
			}
		} else if d, err = storedDelivery(m); err != nil {
			s.log.WarnContext(ctx, "messaging: undecodable stored delivery skipped", "err", err)
			continue
		}
		if d != nil {
			out[i], total = d, total+len(d.GetPayload())
		}
	}
	return out, len(msgs), nil
}

// resolveNotice returns the delivery a log notice stands for, or nil (logged) when the
// notice or its entry does not decode or the entry is gone.
func (s *Server) resolveNotice(ctx context.Context, m msgstore.Message) (*messagingv1.Delivery, error) {
	n, err := parseLogNotice(m.Body)
	if err != nil {
		s.log.WarnContext(ctx, "messaging: undecodable group log notice skipped", "err", err)
		return nil, nil
	}
	e, err := s.inboxes.Get(ctx, logInbox(n.GroupID), msgstore.ID(n.ID))
	if errors.Is(err, msgstore.ErrNotFound) {
		s.log.WarnContext(ctx, "messaging: group log entry gone; notice skipped", "group", hex.EncodeToString(n.GroupID), "entry", hex.EncodeToString(n.ID[:]))
		return nil, nil
	} else if err != nil {
		return nil, s.internal(ctx, "read group log", err)
	}
	r, err := parseLogRecord(e.Body)
	if err != nil {
		s.log.WarnContext(ctx, "messaging: undecodable group log entry skipped", "entry", hex.EncodeToString(n.ID[:]), "err", err)
		return nil, nil
	}
	return &messagingv1.Delivery{
		Kind: r.Kind, Payload: r.Payload, GroupId: r.GroupID, Epoch: r.Epoch,
		MessageId: append([]byte(nil), m.ID[:]...), ServerTime: timestamppb.New(m.Timestamp),
	}, nil
}

// sweepEvery runs the sweep of expired Welcomes every interval until stop is closed.
// (Group log entries expire in the message store, with their notices.)
func (s *Server) sweepEvery(interval time.Duration) {
	defer s.checked.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		if _, err := s.sweepWelcomes(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "messaging: sweeping expired Welcomes failed; the next round retries", "err", err)
		}
	}
}

// welcomeSweepInterval is how often expired Welcomes are deleted.
const welcomeSweepInterval = time.Minute

// logScope is the scope of a group delivery's ids: its kind and group.
func logScope(d *messagingv1.Delivery) []byte {
	return append([]byte{byte(d.GetKind())}, d.GetGroupId()...)
}
