// Package record encodes and decodes the checksummed records of the embedded msgstore log;
// the layout is described in docs/storage.md.
//
// A record is
//
//	crc32c(length..end) uint32 | length uint32 | type byte | payload
//
// with length counting the type byte and payload, all integers big-endian. The checksum
// covers the length, so a torn or corrupted record is detected rather than misread.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// Type says what a record holds.
type Type byte

// Record types. New types get new numbers; decoders reject unknown ones.
const (
	// TypeMessage is one appended message.
	TypeMessage Type = 1
	// TypeDelete removes messages of one inbox by sequence number.
	TypeDelete Type = 2
	// TypeDeleteInbox removes every message of one inbox written before it.
	TypeDeleteInbox Type = 3
)

// HeaderSize is the size of the checksum and length fields.
const HeaderSize = 8

// fixedMessageSize is seq, id, kind, timestamp and expiry.
const fixedMessageSize = 8 + 16 + 1 + 8 + 8

// MaxSize bounds the length field of any record, so a decoder never allocates more.
const MaxSize = 1 + fixedMessageSize + 2*(1+msgstore.MaxNameSize) + msgstore.MaxBodySize

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors returned by Decode; test with errors.Is.
var (
	// ErrShort means b ends inside the record: at the tail of a log, a torn write.
	ErrShort = errors.New("record: truncated")
	// ErrChecksum means the record's checksum does not match.
	ErrChecksum = errors.New("record: checksum mismatch")
	// ErrMalformed means the checksum matched but the contents are invalid.
	ErrMalformed = errors.New("record: malformed")
)

// Record is one decoded record. Message.Body aliases the decoded buffer.
type Record struct {
	Type Type
	// Inbox is set for every type.
	Inbox msgstore.Inbox
	// Seq and Message are set for TypeMessage.
	Seq     uint64
	Message msgstore.Message
	// Seqs lists the deleted messages of a TypeDelete.
	Seqs []uint64
}

// AppendMessage appends the record of m with sequence number seq to dst.
func AppendMessage(dst []byte, seq uint64, m *msgstore.Message) []byte {
	start, dst := begin(dst, TypeMessage)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = append(dst, m.ID[:]...)
	dst = append(dst, byte(m.Kind))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(m.Timestamp)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(m.Expiry)))
	dst = appendInbox(dst, m.Inbox)
	dst = append(dst, m.Body...)
	return end(dst, start)
}

// AppendDelete appends a record deleting seqs from inbox to dst. Callers keep seqs
// within msgstore.MaxBatch so the record stays under MaxSize.
func AppendDelete(dst []byte, inbox msgstore.Inbox, seqs []uint64) []byte {
	start, dst := begin(dst, TypeDelete)
	dst = appendInbox(dst, inbox)
	for _, s := range seqs {
		dst = binary.BigEndian.AppendUint64(dst, s)
	}
	return end(dst, start)
}

// AppendDeleteInbox appends a record deleting all of inbox to dst.
func AppendDeleteInbox(dst []byte, inbox msgstore.Inbox) []byte {
	start, dst := begin(dst, TypeDeleteInbox)
	dst = appendInbox(dst, inbox)
	return end(dst, start)
}

func begin(dst []byte, t Type) (int, []byte) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, byte(t))
	return start, dst
}

func end(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+4:], uint32(len(dst)-start-HeaderSize))
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

func appendInbox(dst []byte, in msgstore.Inbox) []byte {
	dst = append(dst, byte(len(in.UserID)))
	dst = append(dst, in.UserID...)
	dst = append(dst, byte(len(in.DeviceID)))
	return append(dst, in.DeviceID...)
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

// Size returns the total length of the record starting at b, after checking only its
// length field, or ErrShort if b is shorter than a header.
func Size(b []byte) (int, error) {
	if len(b) < HeaderSize {
		return 0, ErrShort
	}
	n := binary.BigEndian.Uint32(b[4:])
	if n == 0 || n > MaxSize {
		return 0, fmt.Errorf("%w: length %d outside 1 to %d", ErrMalformed, n, MaxSize)
	}
	return HeaderSize + int(n), nil
}

// Decode decodes the record at the start of b and returns it with its total length.
// It never reads past the record's length field and allocates only for Seqs, whose
// number is bounded by the length.
func Decode(b []byte) (Record, int, error) {
	size, err := Size(b)
	if err != nil {
		return Record{}, 0, err
	}
	if len(b) < size {
		return Record{}, 0, fmt.Errorf("%w: need %d bytes, have %d", ErrShort, size, len(b))
	}
	if crc32.Checksum(b[4:size], castagnoli) != binary.BigEndian.Uint32(b) {
		return Record{}, 0, ErrChecksum
	}
	r := Record{Type: Type(b[HeaderSize])}
	p := b[HeaderSize+1 : size]
	switch r.Type {
	case TypeMessage:
		if len(p) < fixedMessageSize {
			return Record{}, 0, fmt.Errorf("%w: message record of %d bytes", ErrMalformed, len(p))
		}
		r.Seq = binary.BigEndian.Uint64(p)
		m := &r.Message
		copy(m.ID[:], p[8:24])
		m.Kind = msgstore.Kind(p[24])
		m.Timestamp = fromUnixNano(int64(binary.BigEndian.Uint64(p[25:])))
		m.Expiry = fromUnixNano(int64(binary.BigEndian.Uint64(p[33:])))
		if r.Inbox, p, err = decodeInbox(p[fixedMessageSize:]); err != nil {
			return Record{}, 0, err
		}
		if len(p) > msgstore.MaxBodySize {
			return Record{}, 0, fmt.Errorf("%w: body of %d bytes", ErrMalformed, len(p))
		}
		m.Inbox = r.Inbox
		m.Body = p
	case TypeDelete:
		if r.Inbox, p, err = decodeInbox(p); err != nil {
			return Record{}, 0, err
		}
		if len(p)%8 != 0 || len(p)/8 > msgstore.MaxBatch {
			return Record{}, 0, fmt.Errorf("%w: delete list of %d bytes", ErrMalformed, len(p))
		}
		r.Seqs = make([]uint64, len(p)/8)
		for i := range r.Seqs {
			r.Seqs[i] = binary.BigEndian.Uint64(p[8*i:])
		}
	case TypeDeleteInbox:
		if r.Inbox, p, err = decodeInbox(p); err != nil {
			return Record{}, 0, err
		}
		if len(p) != 0 {
			return Record{}, 0, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(p))
		}
	default:
		return Record{}, 0, fmt.Errorf("%w: unknown type %d", ErrMalformed, r.Type)
	}
	return r, size, nil
}

func decodeInbox(p []byte) (msgstore.Inbox, []byte, error) {
	var in msgstore.Inbox
	var err error
	if in.UserID, p, err = decodeName(p); err != nil {
		return in, nil, err
	}
	if in.DeviceID, p, err = decodeName(p); err != nil {
		return in, nil, err
	}
	if err := in.Validate(); err != nil {
		return in, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return in, p, nil
}

func decodeName(p []byte) (string, []byte, error) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return "", nil, fmt.Errorf("%w: truncated inbox name", ErrMalformed)
	}
	n := int(p[0])
	return string(p[1 : 1+n]), p[1+n:], nil
}

// MessageHeadSize is the length of a message record's head: the fixed fields before
// the inbox, which DecodeMessageHead reads.
const MessageHeadSize = HeaderSize + 1 + 8 + 16 + 1 + 8 + 8

// DecodeMessageHead returns the sequence number, id and expiry of the message record
// whose first MessageHeadSize bytes are b, for an index that keeps only a hash of the
// id. It does not check the checksum, which covers the whole record: callers read
// records whose checksum was checked when the log was replayed or written.
func DecodeMessageHead(b []byte) (seq uint64, id msgstore.ID, expiry time.Time, err error) {
	if len(b) < MessageHeadSize {
		return 0, id, expiry, fmt.Errorf("%w: need %d bytes, have %d", ErrShort, MessageHeadSize, len(b))
	}
	if t := Type(b[HeaderSize]); t != TypeMessage {
		return 0, id, expiry, fmt.Errorf("record of type %d is not a message", t)
	}
	p := b[HeaderSize+1:]
	seq = binary.BigEndian.Uint64(p)
	copy(id[:], p[8:24])
	expiry = fromUnixNano(int64(binary.BigEndian.Uint64(p[33:])))
	return seq, id, expiry, nil
}
