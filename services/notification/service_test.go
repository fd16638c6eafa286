package notification_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/server"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	"github.com/guardyn/guardyn/services/notification"
)

func wantErr(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || server.Reason(err) != reason {
		t.Fatalf("got %v (reason %q), want %v/%s", err, server.Reason(err), code, reason)
	}
}

func (e *env) notice(t *testing.T, user string, device uint32) {
	t.Helper()
	subject, err := bus.DeliveryNoticeSubject(user, device)
	if err != nil {
		t.Fatal(err)
	}
	data := must(proto.Marshal(&eventsv1.DeliveryNotice{Device: &commonv1.DeviceAddress{UserId: user, DeviceId: device}}))
	if err := e.bus.Conn().Publish(subject, data); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBadPushTargetsStoreNothing: malformed and oversized subscriptions, non-https
// endpoints and endpoints on private addresses are refused with a stable reason, and the
// device is left without a target.
func TestBadPushTargetsStoreNothing(t *testing.T) {
	e := start(t, func(c *notification.Config) { c.AllowPrivateEndpoints = false })
	good := e.web.Target("/push/x").GetWebPush()
	web := func(endpoint string, p256dh, auth []byte) *notificationv1.RegisterPushTargetRequest {
		return &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{Endpoint: endpoint, P256Dh: p256dh, Auth: auth}}}
	}
	offCurve := append([]byte{4}, make([]byte, 64)...)
	for _, c := range []struct {
		name   string
		req    *notificationv1.RegisterPushTargetRequest
		reason string
	}{
		{"no target", &notificationv1.RegisterPushTargetRequest{}, "INVALID_PUSH_TARGET"},
		{"short p256dh", web("https://push.example/a", good.GetP256Dh()[:64], good.GetAuth()), server.ReasonLimitExceeded},
		{"long auth", web("https://push.example/a", good.GetP256Dh(), make([]byte, 17)), server.ReasonLimitExceeded},
		{"point off the curve", web("https://push.example/a", offCurve, good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"oversized endpoint", web("https://push.example/"+strings.Repeat("a", 2048), good.GetP256Dh(), good.GetAuth()), server.ReasonLimitExceeded},
		{"http", web("http://push.example/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"loopback literal", web("https://127.0.0.1/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"local test server", web(good.GetEndpoint(), good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"private literal", web("https://10.0.0.7/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"ipv6 loopback", web("https://[::1]/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"localhost", web("https://localhost/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"one private address", web("https://rebind.example/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"cloud metadata", web("https://metadata.example/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"ipv6 private", web("https://v6private.example/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"nat64 of private", web("https://nat64.example/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"mapped loopback", web("https://mapped.example/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"other port", web("https://push.example:8443/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"user info", web("https://user:pw@push.example/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"unresolvable", web("https://nowhere.example/a", good.GetP256Dh(), good.GetAuth()), "INVALID_PUSH_TARGET"},
		{"apns without environment", &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_Apns{Apns: &notificationv1.ApnsTarget{DeviceToken: []byte{1}, Topic: "dev.guardyn.app"}}}, "INVALID_PUSH_TARGET"},
		{"apns header injection", &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_Apns{Apns: &notificationv1.ApnsTarget{DeviceToken: []byte{1}, Topic: "a\r\nx: y", Environment: notificationv1.ApnsEnvironment_APNS_ENVIRONMENT_SANDBOX}}}, "INVALID_PUSH_TARGET"},
		{"empty fcm token", fcmTarget(""), "INVALID_PUSH_TARGET"},
		{"fcm token with quotes", fcmTarget(`a"b`), "INVALID_PUSH_TARGET"},
	} {
		_, err := e.client.RegisterPushTarget(e.as(t, "bob", 1), c.req)
		if status.Code(err) != codes.InvalidArgument || server.Reason(err) != c.reason {
			t.Errorf("%s: got %v (reason %q), want InvalidArgument/%s", c.name, err, server.Reason(err), c.reason)
		}
	}
	list := must(e.client.ListPushTargets(e.as(t, "bob", 1), &notificationv1.ListPushTargetsRequest{}))
	if len(list.GetTargets()) != 0 {
		t.Fatalf("refused registrations stored %v", list.GetTargets())
	}
	// A public endpoint passes.
	must(e.client.RegisterPushTarget(e.as(t, "bob", 1), web("https://push.example/a", good.GetP256Dh(), good.GetAuth())))
}

// TestPushPipeline: a burst of delivery notices for an offline device makes one push per
// platform, with nothing but the wake-up in it; an online device gets none; a gone target
// is deleted; a push refused by server errors is retried with backoff and, when it keeps
// failing, leaves a dead letter.
func TestPushPipeline(t *testing.T) {
	e := start(t, nil)
	must(e.client.RegisterPushTarget(e.as(t, "bob", 1), e.web.Target("/push/bob1")))
	must(e.client.RegisterPushTarget(e.as(t, "bob", 2), apnsTarget("bob2")))
	must(e.client.RegisterPushTarget(e.as(t, "bob", 3), fcmTarget("bob3")))
	list := must(e.client.ListPushTargets(e.as(t, "bob", 1), &notificationv1.ListPushTargetsRequest{}))
	if len(list.GetTargets()) != 3 || list.GetTargets()[1].GetPlatform() != commonv1.PushPlatform_PUSH_PLATFORM_APNS {
		t.Fatalf("targets %v", list.GetTargets())
	}
	if other := must(e.client.ListPushTargets(e.as(t, "mallory", 1), &notificationv1.ListPushTargetsRequest{})); len(other.GetTargets()) != 0 {
		t.Fatalf("mallory lists %v", other.GetTargets())
	}

	for range 10 {
		for d := uint32(1); d <= 3; d++ {
			e.notice(t, "bob", d)
		}
	}
	eventually(t, "one push per device", func() bool {
		return len(e.web.Payloads()) == 1 && len(e.apns.tokens) == 1 && len(e.fcm.sent) == 1
	})
	time.Sleep(300 * time.Millisecond)
	if n := len(e.web.Payloads()); n != 1 {
		t.Fatalf("a burst of 10 notices made %d web pushes", n)
	}

	// Online in the presence bucket: no push.
	must(e.client.RegisterPushTarget(e.as(t, "carol", 1), e.web.Target("/push/carol")))
	presence := must(e.bus.PresenceBucket(context.Background(), 0))
	must(presence.Put(context.Background(), "carol.1", []byte("x")))
	e.notice(t, "carol", 1)

	// Gone: deleted.
	must(e.client.RegisterPushTarget(e.as(t, "dave", 1), apnsTarget("dead")))
	e.notice(t, "dave", 1)
	eventually(t, "gone target deleted", func() bool {
		return len(must(e.client.ListPushTargets(e.as(t, "dave", 1), &notificationv1.ListPushTargetsRequest{})).GetTargets()) == 0
	})

	// Flaky: two 503s, then accepted.
	e.web.Answer("/push/erin", 503, 503)
	must(e.client.RegisterPushTarget(e.as(t, "erin", 1), e.web.Target("/push/erin")))
	e.notice(t, "erin", 1)
	eventually(t, "retried push delivered", func() bool { return e.web.Hits("/push/erin") == 3 })

	// Always failing: a dead letter after MaxAttempts (3), naming no endpoint.
	e.web.Answer("/push/frank", 500, 500, 500, 500, 500)
	must(e.client.RegisterPushTarget(e.as(t, "frank", 1), e.web.Target("/push/frank")))
	e.notice(t, "frank", 1)
	var dead []notification.DeadLetter
	eventually(t, "dead letter", func() bool {
		dead = must(e.svc.DeadLetters(context.Background()))
		return len(dead) == 1
	})
	if d := dead[0]; d.UserID != "frank" || d.Attempts != 3 || strings.Contains(d.Reason, "push/frank") || strings.Contains(d.Reason, "127.0.0.1") {
		t.Fatalf("dead letter %+v", d)
	}
	if n := e.web.Hits("/push/frank"); n != 3 {
		t.Fatalf("frank's endpoint tried %d times, want 3", n)
	}
	if n := e.web.Hits("/push/carol"); n != 0 {
		t.Fatalf("online carol pushed %d times", n)
	}
	if errs := e.web.ProtocolErrors(); len(errs) > 0 {
		t.Fatalf("web push protocol errors: %v", errs)
	}

	// The metrics name providers and fixed reasons only.
	for key, want := range map[string]int{"webpush": 2, "apns": 1, "fcm": 1} {
		if got := e.counts.get(true, key); got != want {
			t.Errorf("sent %s: %d, want %d", key, got, want)
		}
	}
	for key, want := range map[string]int{"apns/GONE": 1, "webpush/SERVER_ERROR": 5} {
		if got := e.counts.get(false, key); got != want {
			t.Errorf("failed %s: %d, want %d", key, got, want)
		}
	}

	// Unregister removes the target; a second time it is not found.
	must(e.client.UnregisterPushTarget(e.as(t, "bob", 1), &notificationv1.UnregisterPushTargetRequest{}))
	_, err := e.client.UnregisterPushTarget(e.as(t, "bob", 1), &notificationv1.UnregisterPushTargetRequest{})
	wantErr(t, err, codes.NotFound, "PUSH_TARGET_NOT_FOUND")
}
