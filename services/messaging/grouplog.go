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
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/msgstore"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// The group log: a group message, proposal or commit is stored ONCE, in the kv store, and
// every member device's inbox gets a fixed-size reference to it (a logNotice), not a copy
// of it. A 1000-device group therefore costs one body write and 1000 small notices per
// message; the Receive stream resolves each notice to the log entry when it reads the
// backlog, and live wake-ups carry the entry itself. A device's read position in the log
// is its queue of notices: it acknowledges a notice as it acknowledged a copy, so the
// at-least-once and ordering guarantees of the inbox hold unchanged (members see a
// group's entries in the order the service stored them).
//
//	msg/glog/<expiry, 20 decimal digits of Unix seconds>/<hex entry id> → logRecord
//
// Keys sort by expiry, so the sweeper deletes expired entries with one range scan from the
// start; a notice expires with its entry, so no live notice ever points to a swept entry.

// groupLogPrefix holds the group log entries.
const groupLogPrefix = "msg/glog/"

// kindLogNotice is the inbox kind of a logNotice; it is no DeliveryKind, so an inbox entry
// written before the group log (a full encoded Delivery) is still told apart.
const kindLogNotice msgstore.Kind = 0x80

// logSweepInterval is how often expired log entries are deleted, and logSweepBatch how
// many one transaction deletes at most.
const (
	logSweepInterval = time.Minute
	logSweepBatch    = 1024
)

// Versions of the two encodings; a decoder refuses any other.
const (
	logRecordV1 = 1
	logNoticeV1 = 1
)

// logEntryID is the 16-byte id of one entry of the log.
type logEntryID [16]byte

// logRecord is one entry of a group log: what the members' Receive streams deliver.
type logRecord struct {
	Kind    messagingv1.DeliveryKind
	GroupID []byte
	Epoch   uint64
	At      time.Time
	Payload []byte
}

// logNotice is what a member device's inbox holds for one log entry.
type logNotice struct {
	Expiry time.Time // Unix seconds; the entry's key starts with it
	ID     logEntryID
}

// Errors of the decoders; both wrap errBadLogEncoding.
var errBadLogEncoding = errors.New("messaging: malformed group log encoding")

// maxLogGroupID bounds the group id a record carries (the API allows 64 bytes).
const maxLogGroupID = 255

// logNoticeSize is the encoded size of every notice.
const logNoticeSize = 1 + 8 + 16

// marshal encodes r: version, kind, epoch, time (Unix nanoseconds), the group id with a
// one-byte length, then the payload to the end.
func (r *logRecord) marshal() ([]byte, error) {
	if len(r.GroupID) > maxLogGroupID || r.Kind < 0 || r.Kind > 0xff {
		return nil, fmt.Errorf("%w: group id of %d bytes, kind %d", errBadLogEncoding, len(r.GroupID), r.Kind)
	}
	b := make([]byte, 0, 2+8+8+1+len(r.GroupID)+len(r.Payload))
	b = append(b, logRecordV1, byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, r.Epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixNano()))
	b = append(b, byte(len(r.GroupID)))
	b = append(b, r.GroupID...)
	return append(b, r.Payload...), nil
}

// parseLogRecord decodes a record written by marshal. It refuses unknown versions, short
// input and group ids that run past the end; the payload may be empty.
func parseLogRecord(b []byte) (*logRecord, error) {
	const head = 2 + 8 + 8 + 1
	if len(b) < head {
		return nil, fmt.Errorf("%w: record of %d bytes is shorter than its %d-byte header", errBadLogEncoding, len(b), head)
	}
	if b[0] != logRecordV1 {
		return nil, fmt.Errorf("%w: record version %d, want %d", errBadLogEncoding, b[0], logRecordV1)
	}
	n := int(b[head-1])
	if len(b) < head+n {
		return nil, fmt.Errorf("%w: group id of %d bytes runs past the record's %d", errBadLogEncoding, n, len(b))
	}
	return &logRecord{
		Kind:    messagingv1.DeliveryKind(b[1]),
		Epoch:   binary.BigEndian.Uint64(b[2:10]),
		At:      time.Unix(0, int64(binary.BigEndian.Uint64(b[10:18]))).UTC(),
		GroupID: append([]byte(nil), b[head:head+n]...),
		Payload: append([]byte(nil), b[head+n:]...),
	}, nil
}

func (n logNotice) marshal() []byte {
	b := make([]byte, 0, logNoticeSize)
	b = append(b, logNoticeV1)
	b = binary.BigEndian.AppendUint64(b, uint64(n.Expiry.Unix()))
	return append(b, n.ID[:]...)
}

// parseLogNotice decodes a notice written by marshal; anything but its exact size and
// version is refused.
func parseLogNotice(b []byte) (logNotice, error) {
	if len(b) != logNoticeSize {
		return logNotice{}, fmt.Errorf("%w: notice of %d bytes, want %d", errBadLogEncoding, len(b), logNoticeSize)
	}
	if b[0] != logNoticeV1 {
		return logNotice{}, fmt.Errorf("%w: notice version %d, want %d", errBadLogEncoding, b[0], logNoticeV1)
	}
	exp := binary.BigEndian.Uint64(b[1:9])
	if exp > 1<<62 {
		return logNotice{}, fmt.Errorf("%w: expiry %d out of range", errBadLogEncoding, exp)
	}
	n := logNotice{Expiry: time.Unix(int64(exp), 0).UTC()}
	copy(n.ID[:], b[9:])
	return n, nil
}

// key is where the entry a notice points to is stored.
func (n logNotice) key() []byte { return logKey(n.Expiry, n.ID) }

func logKey(expiry time.Time, id logEntryID) []byte {
	return []byte(groupLogPrefix + fmt.Sprintf("%020d", max(expiry.Unix(), 0)) + "/" + hex.EncodeToString(id[:]))
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

// appendLog stores d once in the group log and returns the notice every member inbox
// gets for it. The entry expires with the notices, after the message TTL.
func (s *Server) appendLog(ctx context.Context, id logEntryID, d *messagingv1.Delivery, now time.Time) (logNotice, error) {
	// Whole seconds, so that the notice names the key exactly.
	n := logNotice{Expiry: now.Add(s.ttl).Truncate(time.Second), ID: id}
	b, err := (&logRecord{Kind: d.GetKind(), GroupID: d.GetGroupId(), Epoch: d.GetEpoch(), At: now, Payload: d.GetPayload()}).marshal()
	if err != nil {
		return n, s.internal(ctx, "encode group log entry", err)
	}
	if err := s.groups.Update(ctx, func(tx kv.Tx) error { return tx.Put(n.key(), b) }); err != nil {
		return n, s.internal(ctx, "store group log entry", err)
	}
	return n, nil
}

// storedDeliveries turns a page of inbox entries into the deliveries the client sees,
// resolving log notices in one read of the group log. An entry that cannot be turned into
// a delivery (undecodable, or its log entry gone) is nil in the result and logged.
func (s *Server) storedDeliveries(ctx context.Context, msgs []msgstore.Message) ([]*messagingv1.Delivery, error) {
	out := make([]*messagingv1.Delivery, len(msgs))
	var refs []int
	for i, m := range msgs {
		if m.Kind == kindLogNotice {
			refs = append(refs, i)
			continue
		}
		d, err := storedDelivery(m)
		if err != nil {
			s.log.WarnContext(ctx, "messaging: undecodable stored delivery skipped", "err", err)
			continue
		}
		out[i] = d
	}
	if len(refs) == 0 {
		return out, nil
	}
	err := s.groups.View(ctx, func(tx kv.Tx) error {
		for _, i := range refs {
			out[i] = nil // View may run fn again
			n, err := parseLogNotice(msgs[i].Body)
			if err != nil {
				s.log.WarnContext(ctx, "messaging: undecodable group log notice skipped", "err", err)
				continue
			}
			b, err := tx.Get(n.key())
			if errors.Is(err, kv.ErrNotFound) {
				s.log.WarnContext(ctx, "messaging: group log entry gone; notice skipped", "entry", string(n.key()))
				continue
			} else if err != nil {
				return err
			}
			r, err := parseLogRecord(b)
			if err != nil {
				s.log.WarnContext(ctx, "messaging: undecodable group log entry skipped", "entry", string(n.key()), "err", err)
				continue
			}
			out[i] = &messagingv1.Delivery{
				Kind: r.Kind, Payload: r.Payload, GroupId: r.GroupID, Epoch: r.Epoch,
				MessageId: append([]byte(nil), msgs[i].ID[:]...), ServerTime: timestamppb.New(msgs[i].Timestamp),
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.internal(ctx, "read group log", err)
	}
	return out, nil
}

// sweepLog deletes the log entries that expired by now, a batch per transaction, and
// returns how many it deleted.
func (s *Server) sweepLog(ctx context.Context) (int, error) {
	end := []byte(groupLogPrefix + fmt.Sprintf("%020d", s.now().Unix()))
	total := 0
	for {
		n := 0
		err := s.groups.Update(ctx, func(tx kv.Tx) error {
			pairs, err := tx.Scan([]byte(groupLogPrefix), end, logSweepBatch)
			if err != nil {
				return err
			}
			for _, p := range pairs {
				if err := tx.Delete(p.Key); err != nil {
					return err
				}
			}
			n = len(pairs)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < logSweepBatch {
			return total, nil
		}
	}
}

// sweepLogEvery runs sweepLog every interval until stop is closed.
func (s *Server) sweepLogEvery(interval time.Duration) {
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
		if _, err := s.sweepLog(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "messaging: sweeping the group log failed; the next round retries", "err", err)
		}
	}
}

// logScope is the scope of a group delivery's ids: its kind and group.
func logScope(d *messagingv1.Delivery) []byte {
	return append([]byte{byte(d.GetKind())}, d.GetGroupId()...)
}
