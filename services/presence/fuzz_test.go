package presence

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/crypto/presencestatus"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// FuzzDecodeRecord: bucket values come from anyone who can reach NATS. Whatever decodes
// re-encodes to the same bytes and carries a status a device may have.
func FuzzDecodeRecord(f *testing.F) {
	sealed, _ := presencestatus.Seal(presencestatus.GenerateKey(), "bob", "hi")
	f.Add(record{status: presencev1.PresenceStatus_PRESENCE_STATUS_BUSY, updated: time.Unix(1e9, 0), sealed: sealed}.encode())
	f.Add(record{status: presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE}.encode())
	f.Add([]byte{1, 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if availability(r.status) == 0 && r.status != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
			t.Fatalf("decoded status %v", r.status)
		}
		if !bytes.Equal(r.encode(), b) {
			t.Fatalf("re-encodes to %x, was %x", r.encode(), b)
		}
	})
}

// FuzzDecodePrivacy: stored privacy records round-trip and stay within the API's bounds.
func FuzzDecodePrivacy(f *testing.F) {
	f.Add(encodePrivacy(presencev1.PresenceVisibility_PRESENCE_VISIBILITY_CONTACTS, []string{"alice", "bob"}))
	f.Add(encodePrivacy(presencev1.PresenceVisibility_PRESENCE_VISIBILITY_NOBODY, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePrivacy(b)
		if err != nil {
			return
		}
		if len(p.allowed) > maxAllowed {
			t.Fatalf("%d allowed", len(p.allowed))
		}
		for id := range p.allowed {
			if id == "" || len(id) > maxUserIDLen {
				t.Fatalf("allowed id of %d bytes", len(id))
			}
		}
		again, err := decodePrivacy(encodePrivacy(p.visibility, p.list()))
		if err != nil || again.visibility != p.visibility || len(again.allowed) != len(p.allowed) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzDecodeReceiveStreams: reports are bounded whatever a publisher sends.
func FuzzDecodeReceiveStreams(f *testing.F) {
	b, _ := proto.Marshal(&eventsv1.ReceiveStreams{Open: []*commonv1.DeviceAddress{{UserId: "bob", DeviceId: 1}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeReceiveStreams(b)
		if err != nil {
			return
		}
		if len(r.GetOpen()) > maxReportDevices || len(r.GetClosed()) > maxReportDevices {
			t.Fatal("oversized report accepted")
		}
	})
}

func TestParseDeviceKey(t *testing.T) {
	key, err := deviceKey("a.b", 7)
	if err != nil {
		t.Fatal(err)
	}
	tok, dev, ok := parseDeviceKey(key)
	if !ok || dev != 7 || tok != "a=2Eb" {
		t.Fatalf("%q parses to %q %d %v", key, tok, dev, ok)
	}
	for _, bad := range []string{"", "x", "x.0", ".1", "x.y", "x.4294967296"} {
		if _, _, ok := parseDeviceKey(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
