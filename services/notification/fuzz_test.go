package notification

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// FuzzDecodeTarget: stored targets decode to a target with a platform, or an error.
func FuzzDecodeTarget(f *testing.F) {
	b, _ := encodeTarget(storedTarget{registered: time.Unix(1e9, 0), target: &notificationv1.RegisterPushTargetRequest{
		Target: &notificationv1.RegisterPushTargetRequest_Fcm{Fcm: &notificationv1.FcmTarget{RegistrationToken: "t"}}}})
	f.Add(b)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeTarget(b)
		if err != nil {
			return
		}
		if platform(st.target) == commonv1.PushPlatform_PUSH_PLATFORM_UNSPECIFIED {
			t.Fatal("decoded a target without a platform")
		}
	})
}

// FuzzDecodeDead: dead letters decode within their bounds, and round-trip.
func FuzzDecodeDead(f *testing.F) {
	f.Add(encodeDead(DeadLetter{At: time.Unix(1e9, 0), Attempts: 3, Platform: 3, Reason: "push refused: HTTP 500"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDead(b)
		if err != nil {
			return
		}
		if len(d.Reason) > maxReasonLen || string(encodeDead(d)) != string(b) {
			t.Fatalf("dead letter %+v from %x", d, b)
		}
	})
}

// FuzzDecodeNotice: a notice that decodes names a device.
func FuzzDecodeNotice(f *testing.F) {
	b, _ := proto.Marshal(&eventsv1.DeliveryNotice{Device: &commonv1.DeviceAddress{UserId: "bob", DeviceId: 1}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeNotice(b)
		if err != nil {
			return
		}
		if n.GetDevice().GetUserId() == "" || n.GetDevice().GetDeviceId() == 0 {
			t.Fatal("notice without a device")
		}
	})
}

type publicDNS struct{}

func (publicDNS) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
}

// FuzzCheckEndpoint: whatever a client sends as an endpoint, an accepted one is https on
// port 443 with no private address literal.
func FuzzCheckEndpoint(f *testing.F) {
	for _, s := range []string{"https://push.example/a", "https://127.0.0.1/", "http://x/", "https://[::ffff:10.0.0.1]/", "https://0x7f000001/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, endpoint string) {
		if checkEndpoint(context.Background(), publicDNS{}, endpoint, false) != nil {
			return
		}
		u := mustParse(t, endpoint)
		if u.Scheme != "https" || (u.Port() != "" && u.Port() != "443") {
			t.Fatalf("accepted %q", endpoint)
		}
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && !publicAddr(a) {
			t.Fatalf("accepted private %q", endpoint)
		}
	})
}

func mustParse(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// answerConn is a connection whose peer answers with fixed bytes and takes any request.
type answerConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (c *answerConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *answerConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *answerConn) SetDeadline(time.Time) error { return nil }
func (c *answerConn) Close() error                { return nil }

// FuzzH1Exchange: whatever a push service answers, a Web Push exchange returns a final
// status or an error, never both, and never keeps the connection after an error; an
// answer of no bytes, and only that, is errNoAnswer (the one failure sent again on a new
// connection).
func FuzzH1Exchange(f *testing.F) {
	f.Add([]byte("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 307 Temporary Redirect\r\nLocation: https://10.0.0.1/\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 201 Created\r\n\r\nuntil close"))
	f.Add([]byte{})
	msg := []byte("POST /push/x HTTP/1.1\r\nHost: push.example\r\nTTL: 60\r\nContent-Length: 1\r\n\r\nx")
	f.Fuzz(func(t *testing.T, answer []byte) {
		conn := newH1Conn(&answerConn{r: bytes.NewReader(answer)})
		status, keep, err := exchange(conn, msg)
		if len(answer) == 0 && !errors.Is(err, errNoAnswer) {
			t.Fatalf("no answer: %v, want errNoAnswer", err)
		}
		if err != nil {
			if keep || status != 0 {
				t.Fatalf("error %v with status %d, keep %v", err, status, keep)
			}
			if errors.Is(err, errNoAnswer) && conn.read != 0 {
				t.Fatalf("errNoAnswer after %d bytes of answer", conn.read)
			}
			return
		}
		if status < 200 || status > 999 {
			t.Fatalf("status %d", status)
		}
		if conn.read > int64(len(answer)) {
			t.Fatalf("read %d of %d bytes", conn.read, len(answer))
		}
	})
}
