// Package msgstore defines the per-device inboxes that hold end-to-end encrypted envelopes
// from the moment the server accepts them until the recipient device acknowledges them;
// see docs/storage.md.
//
// The store never interprets bodies: they are opaque ciphertext. Every message belongs to
// one [Inbox] (a user's device) and is identified there by its 16-byte [ID], which makes
// appends idempotent. Delivery is at least once: clients drop duplicates by ID.
//
// The embedded backend (msgstore/embedded) keeps a log in the data dir; the cluster
// backend (msgstore/cql: Cassandra or ScyllaDB, partitioned by device and time bucket
// with a TTL per row) plugs in behind the same interface, and every backend passes the
// suite in msgstore/msgstoretest.
package msgstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limits every backend enforces.
const (
	// MaxBodySize is the largest message body, in bytes: the largest payload the API
	// accepts (an MLS Welcome of 1 MiB) with room for the delivery header around it.
	MaxBodySize = 1<<20 + 4<<10
	// MaxNameSize is the largest user or device id, in bytes.
	MaxNameSize = 255
	// MaxBatch is the most messages or ids one call accepts.
	MaxBatch = 4096
	// MaxBatchBytes bounds the total body size of one Append.
	MaxBatchBytes = 64 << 20
	// MaxReadBytes is the largest byte budget of one Read.
	MaxReadBytes = 64 << 20
	// ReadOverhead is the most bytes of its own bookkeeping per message that a backend
	// may count against the byte budget of a Read, besides the body.
	ReadOverhead = 1 << 10
)

// Errors returned by every backend; test for them with errors.Is.
var (
	// ErrInvalid means a message, inbox or argument is malformed; the error wrapping it
	// names the field.
	ErrInvalid = errors.New("msgstore: invalid argument")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("msgstore: store closed")
	// ErrCorrupt means stored data failed its integrity check.
	ErrCorrupt = errors.New("msgstore: corrupt data")
	// ErrUnavailable means a cluster backend could not reach enough replicas or timed
	// out: the call may be retried, and a retried Append is idempotent. An Append that
	// failed so may have stored part of its messages.
	ErrUnavailable = errors.New("msgstore: store unavailable")
	// ErrFull means a backend that enforces an inbox cap itself (cql, whose appends to
	// one inbox are serialized across servers) refused messages that would take an
	// inbox past it. The messages of other inboxes in the same Append may be stored.
	ErrFull = errors.New("msgstore: inbox full")
	// ErrNotFound means Get found no such message: never stored, deleted or expired.
	ErrNotFound = errors.New("msgstore: message not found")
)

// Inbox names the queue of one recipient device.
type Inbox struct {
	UserID   string
	DeviceID string
}

// Validate reports whether both ids are non-empty and at most MaxNameSize bytes.
func (in Inbox) Validate() error {
	switch {
	case in.UserID == "" || len(in.UserID) > MaxNameSize:
		return fmt.Errorf("%w: user id must be 1 to %d bytes, got %d", ErrInvalid, MaxNameSize, len(in.UserID))
	case in.DeviceID == "" || len(in.DeviceID) > MaxNameSize:
		return fmt.Errorf("%w: device id must be 1 to %d bytes, got %d", ErrInvalid, MaxNameSize, len(in.DeviceID))
	}
	return nil
}

func (in Inbox) String() string { return in.UserID + "/" + in.DeviceID }

// ID identifies a message; senders pick it at random, so it is unique per inbox.
type ID [16]byte

// Kind tells the recipient what a message carries (for example a 1:1 envelope, an MLS
// handshake or a receipt). The store only keeps it.
type Kind byte

// Message is one envelope in an inbox.
type Message struct {
	Inbox Inbox
	ID    ID
	Kind  Kind
	// Body is the opaque ciphertext, at most MaxBodySize bytes.
	Body []byte
	// Timestamp is when the server accepted the message.
	Timestamp time.Time
	// Expiry is when the message stops being delivered and is reclaimed; the zero time
	// means never.
	Expiry time.Time
	// Cursor is set by Read: passing it back reads the messages after this one.
	Cursor Cursor
}

// Validate checks the inbox and body size.
func (m *Message) Validate() error {
	if err := m.Inbox.Validate(); err != nil {
		return err
	}
	if len(m.Body) > MaxBodySize {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrInvalid, len(m.Body), MaxBodySize)
	}
	return nil
}

// Cursor is an opaque position in an inbox, taken from Message.Cursor. The zero Cursor
// is the start of the inbox. Cursors are only meaningful for the inbox and backend that
// produced them.
type Cursor []byte

// Store holds the inboxes. It is safe for concurrent use.
type Store interface {
	// Append adds messages to their inboxes. When it returns nil every message is
	// durable: it survives a crash of the process or the machine. Appending an ID that
	// is already in its inbox is a no-op, so retries are safe. A message that expired
	// is accepted and never returned.
	Append(ctx context.Context, msgs []Message) error

	// Read returns unexpired messages of inbox that come after the cursor, in append
	// order: at most limit of them, and no more than fit in maxBytes of body, so that
	// the caller's memory is bounded by its budget and not by what senders queued. The
	// first message comes whatever its size: a message larger than the budget comes
	// alone, and paging always progresses. A backend may count up to ReadOverhead bytes
	// per message besides its body against the budget. A page shorter than limit does
	// not mean the inbox is exhausted; an empty page does. limit must be 1 to MaxBatch
	// and maxBytes 1 to MaxReadBytes.
	Read(ctx context.Context, inbox Inbox, after Cursor, limit, maxBytes int) ([]Message, error)

	// ReadIDs is Read without bodies, for callers that only need to know which messages
	// an inbox holds: the ids of up to limit unexpired messages after the cursor, in
	// append order, and the cursor of the last of them (after itself when there are
	// none). What it costs does not depend on the size of the bodies. limit must be 1
	// to MaxBatch.
	ReadIDs(ctx context.Context, inbox Inbox, after Cursor, limit int) ([]ID, Cursor, error)

	// Get returns the unexpired message of inbox with the given id, or an error wrapping
	// ErrNotFound. It serves messages that are read by id rather than in order, such as
	// the entries of a group log that member inboxes refer to: appended in the same call
	// as the references and ahead of them, they are durable and visible no later than
	// those (a cluster backend commits the inbox of a call's first message before the
	// others).
	Get(ctx context.Context, inbox Inbox, id ID) (Message, error)

	// Delete removes the messages with the given ids from inbox, as the device
	// acknowledges them; unknown ids are ignored. Later Reads no longer return them, but
	// a Delete may become durable only with a later write: a crash can bring deleted
	// messages back, to be delivered again and dropped by the client as duplicates.
	Delete(ctx context.Context, inbox Inbox, ids []ID) error

	// Count returns how many messages inbox holds, for enforcing an inbox size cap. It
	// may still count expired messages that have not been reclaimed yet.
	Count(ctx context.Context, inbox Inbox) (int, error)

	// DeleteInbox removes every message of inbox, when a device or account is deleted.
	// It is durable when it returns.
	DeleteInbox(ctx context.Context, inbox Inbox) error

	// Close flushes pending deletes and releases the store. Later calls fail with
	// ErrClosed.
	Close() error
}

// CheckIDs validates the argument of Delete.
func CheckIDs(ids []ID) error {
	if len(ids) > MaxBatch {
		return fmt.Errorf("%w: %d ids exceed %d", ErrInvalid, len(ids), MaxBatch)
	}
	return nil
}

// CheckLimit validates the limit of Read.
func CheckLimit(limit int) error {
	if limit < 1 || limit > MaxBatch {
		return fmt.Errorf("%w: limit %d outside 1 to %d", ErrInvalid, limit, MaxBatch)
	}
	return nil
}

// CheckReadBytes validates the byte budget of Read.
func CheckReadBytes(maxBytes int) error {
	if maxBytes < 1 || maxBytes > MaxReadBytes {
		return fmt.Errorf("%w: byte budget %d outside 1 to %d", ErrInvalid, maxBytes, MaxReadBytes)
	}
	return nil
}

// CheckMessages validates the argument of Append.
func CheckMessages(msgs []Message) error {
	if len(msgs) > MaxBatch {
		return fmt.Errorf("%w: %d messages exceed %d", ErrInvalid, len(msgs), MaxBatch)
	}
	total := 0
	for i := range msgs {
		if err := msgs[i].Validate(); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		total += len(msgs[i].Body)
	}
	if total > MaxBatchBytes {
		return fmt.Errorf("%w: %d body bytes exceed %d", ErrInvalid, total, MaxBatchBytes)
	}
	return nil
}
