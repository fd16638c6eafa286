package embedded

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// Key layout, one Pebble keyspace. An inbox is encoded as len(user) u8 | user |
// len(device) u8 | device, which no other inbox's encoding starts with, so an inbox's
// keys form one contiguous range under each prefix. Integers are big-endian so that byte
// order is numeric order.
//
//	'm' inbox seq u64              → message value (see appendValue)
//	'i' inbox id [16]              → seq u64: idempotent appends, deletes by id
//	'c' inbox                      → count u64 of live messages (expired ones included
//	                                 until reclaimed)
//	'x' expiry i64 inbox seq u64   → empty: what Reclaim drops, oldest first
//	'n'                            → the last sequence number assigned, u64
const (
	prefixMessage = 'm'
	prefixID      = 'i'
	prefixCount   = 'c'
	prefixExpiry  = 'x'
	prefixSeq     = 'n'
)

// valueHeaderSize is the fixed part of a message value: id, kind, timestamp, expiry.
const valueHeaderSize = 16 + 1 + 8 + 8

// maxKeySize bounds every key: prefix, expiry, the longest inbox and a sequence number.
const maxKeySize = 1 + 8 + 2 + 2*msgstore.MaxNameSize + 8

// A message's key and value are its body and at most msgstore.ReadOverhead bytes more, so
// Read may count them against its budget (this fails to compile otherwise).
var _ [msgstore.ReadOverhead - (maxKeySize + valueHeaderSize)]struct{}

func appendInbox(dst []byte, in msgstore.Inbox) []byte {
	dst = append(dst, byte(len(in.UserID)))
	dst = append(dst, in.UserID...)
	dst = append(dst, byte(len(in.DeviceID)))
	return append(dst, in.DeviceID...)
}

// decodeInbox decodes an inbox at the start of b and returns the rest.
func decodeInbox(b []byte) (msgstore.Inbox, []byte, error) {
	var parts [2]string
	for i := range parts {
		if len(b) < 1 || len(b) < 1+int(b[0]) || b[0] == 0 {
			return msgstore.Inbox{}, nil, fmt.Errorf("%w: truncated inbox in key", msgstore.ErrCorrupt)
		}
		parts[i], b = string(b[1:1+int(b[0])]), b[1+int(b[0]):]
	}
	return msgstore.Inbox{UserID: parts[0], DeviceID: parts[1]}, b, nil
}

func inboxPrefix(prefix byte, in msgstore.Inbox) []byte {
	return appendInbox(append(make([]byte, 0, maxKeySize), prefix), in)
}

func messageKey(in msgstore.Inbox, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(inboxPrefix(prefixMessage, in), seq)
}

func idKey(in msgstore.Inbox, id msgstore.ID) []byte {
	return append(inboxPrefix(prefixID, in), id[:]...)
}

func countKey(in msgstore.Inbox) []byte { return inboxPrefix(prefixCount, in) }

func expiryKey(expiry int64, in msgstore.Inbox, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(append(make([]byte, 0, maxKeySize), prefixExpiry), uint64(expiry))
	return binary.BigEndian.AppendUint64(appendInbox(k, in), seq)
}

// decodeExpiryKey returns the inbox and sequence number of an expiry key.
func decodeExpiryKey(k []byte) (msgstore.Inbox, uint64, error) {
	if len(k) < 1+8 || k[0] != prefixExpiry {
		return msgstore.Inbox{}, 0, fmt.Errorf("%w: expiry key of %d bytes", msgstore.ErrCorrupt, len(k))
	}
	in, rest, err := decodeInbox(k[9:])
	if err != nil {
		return msgstore.Inbox{}, 0, err
	}
	if len(rest) != 8 {
		return msgstore.Inbox{}, 0, fmt.Errorf("%w: expiry key ends in %d bytes, want a sequence number", msgstore.ErrCorrupt, len(rest))
	}
	return in, binary.BigEndian.Uint64(rest), nil
}

// appendValue encodes m's stored fields: id [16] | kind u8 | timestamp i64 ns |
// expiry i64 ns (0 = never) | body.
func appendValue(dst []byte, m *msgstore.Message) []byte {
	dst = append(dst, m.ID[:]...)
	dst = append(dst, byte(m.Kind))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(m.Timestamp)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(m.Expiry)))
	return append(dst, m.Body...)
}

// decodeValue decodes a message value; the body aliases v.
func decodeValue(v []byte) (msgstore.Message, error) {
	if len(v) < valueHeaderSize {
		return msgstore.Message{}, fmt.Errorf("%w: message value of %d bytes, want at least %d", msgstore.ErrCorrupt, len(v), valueHeaderSize)
	}
	if len(v)-valueHeaderSize > msgstore.MaxBodySize {
		return msgstore.Message{}, fmt.Errorf("%w: message body of %d bytes exceeds %d", msgstore.ErrCorrupt, len(v)-valueHeaderSize, msgstore.MaxBodySize)
	}
	var m msgstore.Message
	copy(m.ID[:], v)
	m.Kind = msgstore.Kind(v[16])
	m.Timestamp = fromUnixNano(int64(binary.BigEndian.Uint64(v[17:])))
	m.Expiry = fromUnixNano(int64(binary.BigEndian.Uint64(v[25:])))
	m.Body = v[valueHeaderSize:len(v):len(v)]
	return m, nil
}

// decodeUint64 decodes a stored counter or sequence number.
func decodeUint64(what string, v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %s of %d bytes, want 8", msgstore.ErrCorrupt, what, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
