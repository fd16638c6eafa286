package presence_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/crypto/presencestatus"
	"github.com/guardyn/guardyn/libs/server"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

const (
	online  = presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE
	away    = presencev1.PresenceStatus_PRESENCE_STATUS_AWAY
	busy    = presencev1.PresenceStatus_PRESENCE_STATUS_BUSY
	offline = presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE
	hidden  = presencev1.PresenceStatus_PRESENCE_STATUS_UNSPECIFIED
)

func wantErr(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || server.Reason(err) != reason {
		t.Fatalf("got %v (reason %q), want %v/%s", err, server.Reason(err), code, reason)
	}
}

// TestWatchSeesStatusChange: bob's change of status, with a sealed text only alice can open,
// reaches alice's watch within a second; the server passes the text through unread.
func TestWatchSeesStatusChange(t *testing.T) {
	e := start(t, options{})
	e.everyone(t, "alice")
	e.everyone(t, "bob")
	w := e.watch(t, "alice", "bob")
	w.next(t, offline, 5*time.Second)

	key := presencestatus.GenerateKey()
	sealed := must(presencestatus.Seal(key, "bob", "in a meeting"))
	began := time.Now()
	must(e.client.SetStatus(e.as(t, "bob", 1), &presencev1.SetStatusRequest{Status: busy, SealedStatus: sealed}))
	p := w.next(t, busy, time.Second)
	t.Logf("status change seen after %v", time.Since(began))
	if text, err := presencestatus.Open(key, "bob", p.GetSealedStatus()); err != nil || text != "in a meeting" {
		t.Fatalf("alice opens %q, %v", text, err)
	}
	if p.GetLastSeen() == nil {
		t.Fatal("online account without last seen")
	}

	// The most available device wins: bob's second device online beats busy.
	must(e.client.SetStatus(e.as(t, "bob", 2), &presencev1.SetStatusRequest{Status: online}))
	if p := w.next(t, online, time.Second); len(p.GetSealedStatus()) != 0 {
		t.Fatal("online device shows the busy device's text")
	}
	// Both go offline: alice sees it, with a last seen time.
	must(e.client.SetStatus(e.as(t, "bob", 2), &presencev1.SetStatusRequest{Status: offline}))
	w.next(t, busy, time.Second)
	must(e.client.SetStatus(e.as(t, "bob", 1), &presencev1.SetStatusRequest{Status: offline}))
	if p := w.next(t, offline, time.Second); p.GetLastSeen() == nil || time.Since(p.GetLastSeen().AsTime()) > 2*time.Minute {
		t.Fatalf("offline with last seen %v", p.GetLastSeen())
	}
}

// TestPrivacyIsSymmetric: bob shows his presence to his contacts, alice among them; alice
// sees it only while she shows hers to bob, and mallory never does. Hidden accounts look like
// unknown ones.
func TestPrivacyIsSymmetric(t *testing.T) {
	e := start(t, options{})
	must(e.client.SetPresencePrivacy(e.as(t, "bob", 1), &presencev1.SetPresencePrivacyRequest{
		Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_CONTACTS, AllowedUserIds: []string{"alice"},
	}))
	must(e.client.SetStatus(e.as(t, "bob", 1), &presencev1.SetStatusRequest{Status: away}))
	lookup := func(viewer string) *presencev1.Presence {
		r := must(e.client.GetLastSeen(e.as(t, viewer, 1), &presencev1.GetLastSeenRequest{UserIds: []string{"bob"}}))
		return r.GetPresences()[0]
	}
	watchErr := func(viewer string) error {
		s, err := e.client.WatchPresence(e.as(t, viewer, 1), &presencev1.WatchPresenceRequest{UserIds: []string{"bob"}})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}

	// alice's own default (contacts, nobody listed) hides bob from her.
	if p := lookup("alice"); p.GetStatus() != hidden || p.GetLastSeen() != nil {
		t.Fatalf("alice hiding her own presence sees %v", p)
	}
	wantErr(t, watchErr("alice"), codes.PermissionDenied, "PRESENCE_HIDDEN")
	// Unknown accounts answer the same.
	if p := must(e.client.GetLastSeen(e.as(t, "alice", 1), &presencev1.GetLastSeenRequest{UserIds: []string{"nobody-here"}})).GetPresences()[0]; p.GetStatus() != hidden {
		t.Fatalf("unknown account: %v", p)
	}

	e.everyone(t, "alice")
	if p := lookup("alice"); p.GetStatus() != away || p.GetLastSeen() == nil {
		t.Fatalf("alice sees %v", p)
	}
	e.everyone(t, "mallory")
	if p := lookup("mallory"); p.GetStatus() != hidden {
		t.Fatalf("mallory, not in bob's list, sees %v", p)
	}
	wantErr(t, watchErr("mallory"), codes.PermissionDenied, "PRESENCE_HIDDEN")

	// A change of privacy reaches open watches: alice hides herself, and bob disappears.
	w := e.watch(t, "alice", "bob")
	w.next(t, away, 5*time.Second)
	must(e.client.SetPresencePrivacy(e.as(t, "alice", 1), &presencev1.SetPresencePrivacyRequest{Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_NOBODY}))
	w.next(t, hidden, time.Second)

	got := must(e.client.GetPresencePrivacy(e.as(t, "bob", 1), &presencev1.GetPresencePrivacyRequest{}))
	if got.GetVisibility() != presencev1.PresenceVisibility_PRESENCE_VISIBILITY_CONTACTS || len(got.GetAllowedUserIds()) != 1 || got.GetAllowedUserIds()[0] != "alice" {
		t.Fatalf("bob's privacy reads back as %v", got)
	}
}

// TestPresenceExpires: with heartbeats stopped, the key expires with the bucket's TTL and
// watchers see the account go offline with its last seen time; nobody calls anything.
func TestPresenceExpires(t *testing.T) {
	e := start(t, options{ttl: 2 * time.Second})
	e.everyone(t, "alice")
	e.everyone(t, "bob")
	w := e.watch(t, "alice", "bob")
	w.next(t, offline, 5*time.Second)
	hb := must(e.client.Heartbeat(e.as(t, "bob", 1), &presencev1.HeartbeatRequest{}))
	if hb.GetInterval().AsDuration() <= 0 {
		t.Fatalf("heartbeat interval %v", hb.GetInterval())
	}
	w.next(t, online, time.Second)
	began := time.Now()
	p := w.next(t, offline, 15*time.Second)
	t.Logf("offline %v after the last heartbeat (TTL 2s)", time.Since(began))
	if p.GetLastSeen() == nil {
		t.Fatal("expired account has no last seen")
	}
	// Last seen is kept after the view forgot the account.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := must(e.client.GetLastSeen(e.as(t, "alice", 1), &presencev1.GetLastSeenRequest{UserIds: []string{"bob"}}))
		if ls := r.GetPresences()[0].GetLastSeen(); ls != nil && r.GetPresences()[0].GetStatus() == offline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last seen lost: %v", r.GetPresences()[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReceiveStreamIsHeartbeat: a messaging instance's report of an open Receive stream
// brings the device online with no call of its own, refreshes it, and its end takes it
// offline.
func TestReceiveStreamIsHeartbeat(t *testing.T) {
	e := start(t, options{ttl: 2 * time.Second})
	e.everyone(t, "alice")
	e.everyone(t, "bob")
	w := e.watch(t, "alice", "bob")
	w.next(t, offline, 5*time.Second)
	report := func(r *eventsv1.ReceiveStreams) {
		if err := e.bus.Conn().Publish(bus.SubjectReceiveStreams, must(proto.Marshal(r))); err != nil {
			t.Fatal(err)
		}
	}
	bob := []*commonv1.DeviceAddress{{UserId: "bob", DeviceId: 1}}
	report(&eventsv1.ReceiveStreams{Open: bob})
	w.next(t, online, time.Second)
	// Reports every second keep bob online past the 2 s TTL.
	stop := time.Now().Add(4 * time.Second)
	for time.Now().Before(stop) {
		report(&eventsv1.ReceiveStreams{Open: bob})
		select {
		case p := <-w.updates:
			if p.GetStatus() != online {
				t.Fatalf("bob went %v while his stream was open", p.GetStatus())
			}
		case <-time.After(time.Second):
		}
	}
	report(&eventsv1.ReceiveStreams{Closed: bob})
	w.next(t, offline, time.Second)
}

// TestBadStatusStoresNothing: a status text over its limit, one not in the sealed format, and
// an unspecified status are refused with their reasons, and no key is written.
func TestBadStatusStoresNothing(t *testing.T) {
	e := start(t, options{})
	good := must(presencestatus.Seal(presencestatus.GenerateKey(), "bob", "ok"))
	for _, c := range []struct {
		name   string
		req    *presencev1.SetStatusRequest
		reason string
	}{
		{"text over limit", &presencev1.SetStatusRequest{Status: online, SealedStatus: bytes.Repeat([]byte{1}, 321)}, server.ReasonLimitExceeded},
		{"not sealed", &presencev1.SetStatusRequest{Status: online, SealedStatus: []byte(strings.Repeat("plain text", 8))}, "MALFORMED_REQUEST"},
		{"bad padding", &presencev1.SetStatusRequest{Status: online, SealedStatus: good[:len(good)-1]}, "MALFORMED_REQUEST"},
		{"unspecified", &presencev1.SetStatusRequest{}, "MALFORMED_REQUEST"},
		{"text while offline", &presencev1.SetStatusRequest{Status: offline, SealedStatus: good}, "MALFORMED_REQUEST"},
	} {
		_, err := e.client.SetStatus(e.as(t, "bob", 1), c.req)
		wantErr(t, err, codes.InvalidArgument, c.reason)
	}
	bucket := must(e.bus.PresenceBucket(context.Background(), 0))
	keys, err := bucket.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		t.Fatalf("bad requests stored key %q", k)
	}
	_, err = e.client.SetPresencePrivacy(e.as(t, "bob", 1), &presencev1.SetPresencePrivacyRequest{})
	wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
	got := must(e.client.GetPresencePrivacy(e.as(t, "bob", 1), &presencev1.GetPresencePrivacyRequest{}))
	if got.GetVisibility() != presencev1.PresenceVisibility_PRESENCE_VISIBILITY_CONTACTS {
		t.Fatalf("refused privacy change stored %v", got)
	}
	s, err := e.client.WatchPresence(e.as(t, "bob", 1), &presencev1.WatchPresenceRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
}
