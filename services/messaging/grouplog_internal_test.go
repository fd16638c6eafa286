package messaging

import (
	"bytes"
	"errors"
	"testing"
	"time"

	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// FuzzParseLogRecord: the decoder of group log entries never panics, refuses with
// errBadLogEncoding, and what it accepts encodes back to the same bytes.
func FuzzParseLogRecord(f *testing.F) {
	r := &logRecord{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE, GroupID: []byte("trip"), Epoch: 7, At: time.Unix(1, 2), Expiry: time.Unix(1700000000, 0), Payload: []byte("ciphertext")}
	b, err := r.marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:5])
	f.Add([]byte{1})
	f.Add(append([]byte{2, 3}, make([]byte, 25)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseLogRecord(b)
		if err != nil {
			if !errors.Is(err, errBadLogEncoding) {
				t.Fatalf("error %v does not wrap errBadLogEncoding", err)
			}
			return
		}
		again, err := r.marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted %x but it encodes back to %x (%v)", b, again, err)
		}
	})
}

// FuzzParseLogNotice: the same for the notices in member inboxes, which also never name
// an inbox that is not a group log.
func FuzzParseLogNotice(f *testing.F) {
	f.Add(logNotice{ID: logEntryID{1, 2, 3}, GroupID: []byte("trip")}.marshal())
	f.Add([]byte{3})
	f.Add(append([]byte{2}, make([]byte, 16)...))
	f.Add(bytes.Repeat([]byte{0xff}, maxLogNotice))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseLogNotice(b)
		if err != nil {
			if !errors.Is(err, errBadLogEncoding) {
				t.Fatalf("error %v does not wrap errBadLogEncoding", err)
			}
			return
		}
		if again := n.marshal(); !bytes.Equal(again, b) {
			t.Fatalf("accepted %x but it encodes back to %x", b, again)
		}
		if in := logInbox(n.GroupID); in.UserID != groupLogUser || in.DeviceID[0] != 'g' {
			t.Fatalf("notice names inbox %s outside the group logs", in)
		}
	})
}

// TestLogCodecsRefuseBadInput: every malformed encoding gets a clear error.
func TestLogCodecsRefuseBadInput(t *testing.T) {
	good, err := (&logRecord{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT, GroupID: []byte("g"), Expiry: time.Unix(5, 0), Payload: []byte("p")}).marshal()
	if err != nil {
		t.Fatal(err)
	}
	badExpiry := bytes.Clone(good)
	copy(badExpiry[18:26], bytes.Repeat([]byte{0xff}, 8))
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short header":  good[:10],
		"version 1":     append([]byte{1}, good[1:]...),
		"expiry":        badExpiry,
		"group id past": append(append([]byte(nil), good[:logRecordHeader-1]...), 9, 'g'),
	} {
		if _, err := parseLogRecord(b); !errors.Is(err, errBadLogEncoding) {
			t.Errorf("record %s: err = %v, want errBadLogEncoding", name, err)
		}
	}
	notice := logNotice{ID: logEntryID{9}, GroupID: []byte("g")}.marshal()
	for name, b := range map[string][]byte{
		"empty":       nil,
		"short":       notice[:logNoticeHeader-1],
		"no group id": notice[:logNoticeHeader],
		"long":        append(bytes.Clone(notice), make([]byte, maxLogGroupID)...),
		"version 2":   append([]byte{2}, notice[1:logNoticeHeader]...),
		"version 1":   append([]byte{1}, notice[1:]...),
	} {
		if _, err := parseLogNotice(b); !errors.Is(err, errBadLogEncoding) {
			t.Errorf("notice %s: err = %v, want errBadLogEncoding", name, err)
		}
	}
	if _, err := (&logRecord{GroupID: make([]byte, 256)}).marshal(); !errors.Is(err, errBadLogEncoding) {
		t.Errorf("a 256-byte group id was encoded: %v", err)
	}
}
