// Package content encodes the plaintext a Guardyn client puts inside an end-to-end
// encrypted message: a small versioned JSON object naming the kind (text, receipt,
// typing), a client message id, the body, the send time and the sender's username. The
// format is described in docs/cli.md ("How the client works").
package content

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is the only content version this code writes and reads.
const Version = 1

// Limits enforced by Decode before and after parsing.
const (
	// MaxEncodedSize bounds an encoded message; Decode rejects longer input before parsing.
	MaxEncodedSize = 64 << 10
	// MaxBodySize bounds a text body in bytes.
	MaxBodySize = 32 << 10
	// MaxUsernameSize bounds the sender and conversation usernames (the server allows 32).
	MaxUsernameSize = 32
	// MaxRefs bounds the messages one receipt acknowledges.
	MaxRefs = 256
)

// Kind says what a message is.
type Kind string

// Message kinds.
const (
	// KindText is a chat message typed by a person.
	KindText Kind = "text"
	// KindReceipt acknowledges that a device received the messages named by Refs.
	KindReceipt Kind = "receipt"
	// KindTyping says the sender is typing; it is sent ephemerally and never stored.
	KindTyping Kind = "typing"
	// KindStatusKey shares the sender's presence status key (docs/crypto/presence.md); Body
	// is FormatStatusKey's.
	KindStatusKey Kind = "status-key"
)

// FormatStatusKey is the Body of a KindStatusKey message: the key id in 8 hex digits, a
// colon, and the 32-byte key in unpadded base64url.
func FormatStatusKey(id uint32, key []byte) string {
	return fmt.Sprintf("%08x:%s", id, base64.RawURLEncoding.EncodeToString(key))
}

// ParseStatusKey parses a KindStatusKey Body.
func ParseStatusKey(body string) (uint32, []byte, error) {
	idHex, b64, ok := strings.Cut(body, ":")
	if !ok || len(idHex) != 8 {
		return 0, nil, fmt.Errorf("%w: status key body", ErrMalformed)
	}
	id, err := strconv.ParseUint(idHex, 16, 32)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: status key id", ErrMalformed)
	}
	key, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(key) != 32 {
		return 0, nil, fmt.Errorf("%w: status key", ErrMalformed)
	}
	return uint32(id), key, nil
}

// ID is a client-chosen random message id, also the idempotency key of the send.
type ID [16]byte

// NewID returns a random id.
func NewID() ID {
	var id ID
	rand.Read(id[:])
	return id
}

// String returns the id in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID decodes the hex form of an id.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: message id %q is not 32 hex digits", ErrMalformed, s)
	}
	copy(id[:], b)
	return id, nil
}

// Errors callers can test with errors.Is.
var (
	// ErrMalformed reports content that does not decode or breaks a field rule.
	ErrMalformed = errors.New("content: malformed message")
	// ErrUnsupportedVersion reports content of a version this code does not know.
	ErrUnsupportedVersion = errors.New("content: unsupported version")
	// ErrTooLarge reports content or a body above its limit.
	ErrTooLarge = errors.New("content: too large")
)

// Message is one decoded message.
type Message struct {
	ID   ID
	Kind Kind
	// Body is the text of a KindText message; empty otherwise.
	Body string
	// Sent is when the sender's clock says it sent the message (millisecond precision).
	Sent time.Time
	// From is the sender's username. Receivers check it against the sender certificate's
	// account before showing it.
	From string
	// To names the conversation on copies a sender sends to its own other devices: the
	// username the message was written to. Empty on messages to the recipient itself.
	To string
	// Refs are the messages a receipt acknowledges (one receipt answers a whole batch).
	Refs []ID
	// File is the shared file of a KindFile message.
	File *File
}

// wire is the JSON form. Ids travel in hex so a person can read a dump.
type wire struct {
	V    int      `json:"v"`
	ID   string   `json:"id"`
	Kind Kind     `json:"kind"`
	Body string   `json:"body,omitempty"`
	Sent int64    `json:"sent"`
	From string   `json:"from"`
	To   string   `json:"to,omitempty"`
	Refs []string `json:"refs,omitempty"`

	// File is set on KindFile messages only.
	File *fileWire `json:"file,omitempty"`
}

// Encode checks m against the field rules and encodes it.
func Encode(m Message) ([]byte, error) {
	w := wire{V: Version, ID: m.ID.String(), Kind: m.Kind, Body: m.Body, Sent: m.Sent.UnixMilli(), From: m.From, To: m.To}
	for _, r := range m.Refs {
		w.Refs = append(w.Refs, r.String())
	}
	if m.File != nil {
		w.File = m.File.wire()
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("content: encode: %w", err)
	}
	return b, nil
}

// Decode parses and checks an encoded message. It rejects input above MaxEncodedSize before
// parsing, unknown versions with ErrUnsupportedVersion and every rule violation with
// ErrMalformed or ErrTooLarge.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxEncodedSize {
		return Message{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, len(b), MaxEncodedSize)
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.V != Version {
		return Message{}, fmt.Errorf("%w: %d", ErrUnsupportedVersion, w.V)
	}
	if err := w.check(); err != nil {
		return Message{}, err
	}
	m := Message{Kind: w.Kind, Body: w.Body, Sent: time.UnixMilli(w.Sent).UTC(), From: w.From, To: w.To}
	var err error
	if m.ID, err = ParseID(w.ID); err != nil {
		return Message{}, err
	}
	for _, r := range w.Refs {
		id, err := ParseID(r)
		if err != nil {
			return Message{}, err
		}
		m.Refs = append(m.Refs, id)
	}
	if w.File != nil {
		if m.File, err = w.File.file(); err != nil {
			return Message{}, err
		}
	}
	return m, nil
}

func (w wire) check() error {
	if (w.Kind == KindFile) != (w.File != nil) {
		return fmt.Errorf("%w: a file goes with kind %q only", ErrMalformed, KindFile)
	}
	switch w.Kind {
	case KindFile:
		if len(w.Refs) > 0 || w.Body != "" {
			return fmt.Errorf("%w: file message with refs or a body", ErrMalformed)
		}
		if _, err := w.File.file(); err != nil {
			return err
		}
	case KindText, KindTyping:
		if len(w.Refs) > 0 {
			return fmt.Errorf("%w: %s message with refs", ErrMalformed, w.Kind)
		}
		if w.Kind == KindTyping && w.Body != "" {
			return fmt.Errorf("%w: typing message with a body", ErrMalformed)
		}
	case KindStatusKey:
		if len(w.Refs) > 0 {
			return fmt.Errorf("%w: status key with refs", ErrMalformed)
		}
		if _, _, err := ParseStatusKey(w.Body); err != nil {
			return err
		}
	case KindReceipt:
		if w.Body != "" {
			return fmt.Errorf("%w: receipt with a body", ErrMalformed)
		}
		if len(w.Refs) == 0 || len(w.Refs) > MaxRefs {
			return fmt.Errorf("%w: receipt with %d refs, want 1 to %d", ErrMalformed, len(w.Refs), MaxRefs)
		}
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrMalformed, w.Kind)
	}
	if len(w.Body) > MaxBodySize {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrTooLarge, len(w.Body), MaxBodySize)
	}
	if !utf8.ValidString(w.Body) {
		return fmt.Errorf("%w: body is not UTF-8", ErrMalformed)
	}
	if !validUsername(w.From) {
		return fmt.Errorf("%w: sender username %q", ErrMalformed, w.From)
	}
	if w.To != "" && !validUsername(w.To) {
		return fmt.Errorf("%w: conversation username %q", ErrMalformed, w.To)
	}
	// Sent must round-trip through time.UnixMilli without overflow; clients never send
	// times before 1970 or past year 9999.
	if w.Sent < 0 || w.Sent > 253402300799999 {
		return fmt.Errorf("%w: send time %d out of range", ErrMalformed, w.Sent)
	}
	return nil
}

// validUsername applies the server's username rule (3-32 characters of [a-z0-9_.]), so a
// decoded name is always safe to print.
func validUsername(s string) bool {
	if len(s) < 3 || len(s) > MaxUsernameSize {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_.") == ""
}
