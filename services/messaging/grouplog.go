package messaging

import (
	"bytes"
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
//	msg/glog/<hex entry id>                             → logRecord
//	msg/glogx/<expiry: 20 digits of Unix seconds>/<hex entry id> → empty (expiry index)
//
// An entry's id derives from its sender and idempotency key, so a retried send rewrites
// the same entry and its notices (same ids) are no-ops. The entry is written durably
// before its notices, so a Receive stream never reads a notice whose entry is not there
// yet; a crash between them leaves an orphan entry, swept at its expiry. The send is
// acknowledged only once both are durable. The sweeper walks the expiry
// index from its start.

// groupLogPrefix holds the group log entries, groupLogExpiryPrefix their expiry index.
const (
	groupLogPrefix       = "msg/glog/"
	groupLogExpiryPrefix = "msg/glogx/"
)

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
	logRecordV2 = 2
	logNoticeV2 = 2
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

// logNotice is what a member device's inbox holds for one log entry.
type logNotice struct {
	ID logEntryID
}

// Errors of the decoders; both wrap errBadLogEncoding.
var errBadLogEncoding = errors.New("messaging: malformed group log encoding")

// maxLogGroupID bounds the group id a record carries (the API allows 64 bytes).
const maxLogGroupID = 255

// logNoticeSize is the encoded size of every notice.
const logNoticeSize = 1 + 16

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

func (n logNotice) marshal() []byte { return append([]byte{logNoticeV2}, n.ID[:]...) }

// parseLogNotice decodes a notice written by marshal; anything but its exact size and
// version is refused.
func parseLogNotice(b []byte) (logNotice, error) {
	if len(b) != logNoticeSize {
		return logNotice{}, fmt.Errorf("%w: notice of %d bytes, want %d", errBadLogEncoding, len(b), logNoticeSize)
	}
	if b[0] != logNoticeV2 {
		return logNotice{}, fmt.Errorf("%w: notice version %d, want %d", errBadLogEncoding, b[0], logNoticeV2)
	}
	var n logNotice
	copy(n.ID[:], b[1:])
	return n, nil
}

// key is where the entry a notice points to is stored.
func (n logNotice) key() []byte { return logKey(n.ID) }

func logKey(id logEntryID) []byte { return []byte(groupLogPrefix + hex.EncodeToString(id[:])) }

func logExpiryKey(expiry time.Time, id logEntryID) []byte {
	return []byte(groupLogExpiryPrefix + fmt.Sprintf("%020d", max(expiry.Unix(), 0)) + "/" + hex.EncodeToString(id[:]))
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

// appendLog stores d once in the group log, with its entry in the expiry index; the
// entry expires with the notices, after the message TTL.
func (s *Server) appendLog(ctx context.Context, id logEntryID, d *messagingv1.Delivery, now, expiry time.Time) error {
	b, err := (&logRecord{Kind: d.GetKind(), GroupID: d.GetGroupId(), Epoch: d.GetEpoch(), At: now, Expiry: expiry, Payload: d.GetPayload()}).marshal()
	if err != nil {
		return s.internal(ctx, "encode group log entry", err)
	}
	err = s.groups.Update(ctx, func(tx kv.Tx) error {
		if err := tx.Put(logKey(id), b); err != nil {
			return err
		}
		return tx.Put(logExpiryKey(expiry, id), nil)
	})
	if err != nil {
		return s.internal(ctx, "store group log entry", err)
	}
	return nil
}

// storedDeliveries turns a page of inbox entries into the deliveries the client sees,
// resolving log notices in one read of the group log. An entry that cannot be turned into
// a delivery (undecodable, or its log entry gone) is nil in the result and logged, as is
// every entry skip marks (already in flight: nothing to resolve).
//
// A notice is 17 bytes in the inbox but stands for a payload of up to the message limit,
// so the inbox read's byte budget does not bound what resolving a page costs: resolving
// stops once the deliveries reach budget bytes (after at least one), and n says how many
// entries of msgs were looked at. The caller must not use the entries past n.
func (s *Server) storedDeliveries(ctx context.Context, msgs []msgstore.Message, skip []bool, budget int) (out []*messagingv1.Delivery, n int, err error) {
	out = make([]*messagingv1.Delivery, len(msgs))
	var refs []int
	n = len(msgs)
	total := 0
	for i, m := range msgs {
		if skip != nil && skip[i] {
			continue
		}
		if m.Kind == kindLogNotice {
			refs = append(refs, i)
			continue
		}
		if total >= budget {
			n = i
			break
		}
		d, err := storedDelivery(m)
		if err != nil {
			s.log.WarnContext(ctx, "messaging: undecodable stored delivery skipped", "err", err)
			continue
		}
		out[i], total = d, total+len(d.GetPayload())
	}
	if len(refs) == 0 {
		return out, n, nil
	}
	// Notices and plain entries interleave: a notice past the plain entries' cut stays
	// unresolved, and the notices' own payloads count from where the plain ones left off.
	plain, plainN := total, n
	err = s.groups.View(ctx, func(tx kv.Tx) error {
		total, n = plain, plainN
		for _, i := range refs {
			out[i] = nil // View may run fn again
			if i >= n {
				break
			}
			if total >= budget {
				n = i
				break
			}
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
			total += len(r.Payload)
		}
		return nil
	})
	if err != nil {
		return nil, 0, s.internal(ctx, "read group log", err)
	}
	for i := n; i < len(out); i++ {
		out[i] = nil
	}
	return out, n, nil
}

// sweepLog deletes the log entries that expired by now, a batch of the expiry index per
// transaction, and returns how many entries it deleted. An index key whose entry was
// rewritten later (a retried send) with a later expiry leaves the entry alone.
func (s *Server) sweepLog(ctx context.Context) (int, error) {
	now := s.now()
	end := []byte(groupLogExpiryPrefix + fmt.Sprintf("%020d", now.Unix()+1))
	total := 0
	for {
		n, deleted := 0, 0
		err := s.groups.Update(ctx, func(tx kv.Tx) error {
			n, deleted = 0, 0
			pairs, err := tx.Scan([]byte(groupLogExpiryPrefix), end, logSweepBatch)
			if err != nil {
				return err
			}
			for _, p := range pairs {
				if err := tx.Delete(p.Key); err != nil {
					return err
				}
				i := bytes.LastIndexByte(p.Key, '/')
				var id logEntryID
				if h, err := hex.DecodeString(string(p.Key[i+1:])); err != nil || len(h) != len(id) {
					continue
				} else {
					copy(id[:], h)
				}
				b, err := tx.Get(logKey(id))
				if errors.Is(err, kv.ErrNotFound) {
					continue
				} else if err != nil {
					return err
				}
				if r, err := parseLogRecord(b); err == nil && r.Expiry.After(now) {
					continue
				}
				if err := tx.Delete(logKey(id)); err != nil {
					return err
				}
				deleted++
			}
			n = len(pairs)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += deleted
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
		if _, err := s.sweepWelcomes(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "messaging: sweeping expired Welcomes failed; the next round retries", "err", err)
		}
	}
}

// logScope is the scope of a group delivery's ids: its kind and group.
func logScope(d *messagingv1.Delivery) []byte {
	return append([]byte{byte(d.GetKind())}, d.GetGroupId()...)
}
