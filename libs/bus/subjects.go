package bus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Subjects and streams. Every subject Guardyn publishes is built from these
// constants; services never spell subjects themselves.
const (
	// SubjectDeliverPrefix + ".<user>.<device>" wakes a device's Receive
	// stream: new envelopes are in its inbox (core NATS, the message store is
	// the source of truth, a lost wake-up costs only latency).
	SubjectDeliverPrefix = "guardyn.msg.deliver"
	// SubjectDeliverAll matches every device's wake-ups, for a process that
	// fans them out locally.
	SubjectDeliverAll = SubjectDeliverPrefix + ".>"

	// SubjectAuthEvents matches every auth event in StreamAuthEvents.
	SubjectAuthEvents = "guardyn.auth.>"
	// SubjectPrekeysLow announces that a device is running out of one-time
	// prekeys.
	SubjectPrekeysLow = "guardyn.auth.prekeys.low"
	// SubjectDeviceRemoved announces that a device was removed, so every
	// process revokes its tokens at once.
	SubjectDeviceRemoved = "guardyn.auth.device.removed"

	// SubjectAccountDeleted announces that an account and all its devices
	// are gone, so their queued messages are deleted.
	SubjectAccountDeleted = "guardyn.auth.account.deleted"
	// SubjectDevicesChanged announces that an account gained or lost a
	// device, so cached device lists are dropped (core NATS).
	SubjectDevicesChanged = "guardyn.directory.changed"
	// SubjectDirectoryDevices is the request/reply subject on which the auth
	// service answers an account's current device list. It lies outside
	// SubjectAuthEvents: a stream capturing a request subject would answer
	// requests with publish acknowledgements.
	SubjectDirectoryDevices = "guardyn.directory.devices"

	// StreamAuthEvents is the JetStream stream holding auth events.
	StreamAuthEvents = "GUARDYN_AUTH"
)

// MaxTokenLen bounds the unescaped input of a subject token.
const MaxTokenLen = 128

// ErrBadToken reports a value that cannot become a subject token.
var ErrBadToken = errors.New("invalid subject token")

// EscapeToken turns an identifier into one NATS subject token. Letters,
// digits, '-' and '_' pass unchanged; every other byte, including the
// subject metacharacters '.', '*' and '>', whitespace and '=' itself, becomes
// "=XX" (upper-case hex), so distinct inputs give distinct tokens and no input
// can add a subject level or a wildcard. The result is also a valid
// JetStream KV key.
func EscapeToken(s string) (string, error) {
	if s == "" || len(s) > MaxTokenLen {
		return "", fmt.Errorf("%w: %d bytes, want 1..%d", ErrBadToken, len(s), MaxTokenLen)
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !isPlain(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s, nil
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isPlain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String(), nil
}

func isPlain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// DeliverSubject is the wake-up subject of one device.
func DeliverSubject(userID string, deviceID uint32) (string, error) {
	user, err := EscapeToken(userID)
	if err != nil {
		return "", fmt.Errorf("deliver subject for user %q: %w", userID, err)
	}
	if deviceID == 0 {
		return "", fmt.Errorf("deliver subject for user %q: %w: device id 0", userID, ErrBadToken)
	}
	return SubjectDeliverPrefix + "." + user + "." + strconv.FormatUint(uint64(deviceID), 10), nil
}

// DeliverUserSubject matches the wake-ups of every device of one user.
func DeliverUserSubject(userID string) (string, error) {
	user, err := EscapeToken(userID)
	if err != nil {
		return "", fmt.Errorf("deliver subject for user %q: %w", userID, err)
	}
	return SubjectDeliverPrefix + "." + user + ".*", nil
}
