package platform_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/services/notification"
	"github.com/guardyn/guardyn/services/notification/notificationtest"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// TestPresenceAndPushAcrossServices: in the all-in-one server, bob's open Receive stream
// alone shows him online to alice, its end shows him offline, and messages for him while
// offline wake his browser with one content-free Web Push per burst; while his stream is
// open, nothing is pushed.
func TestPresenceAndPushAcrossServices(t *testing.T) {
	vapid, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pushSrv := notificationtest.NewWebPushServer(t, vapid.PublicKey().Bytes())
	pool := x509.NewCertPool()
	pool.AddCert(pushSrv.Certificate())
	web := must(notification.NewWebPush(notification.WebPushConfig{VAPIDKey: vapid, Subject: "mailto:ops@guardyn.test",
		HTTP: notification.HTTPOptions{TLS: &tls.Config{RootCAs: pool}, AllowPrivate: true}}))
	e := startWith(t, func(c *platform.Config) {
		c.WebPush = web
		c.AllowPrivatePushEndpoints = true
	})
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	for _, d := range []*device{alice, bob} {
		must(e.pres.SetPresencePrivacy(d.ctx(t), &presencev1.SetPresencePrivacyRequest{Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE}))
	}
	watch := must(e.pres.WatchPresence(alice.ctx(t), &presencev1.WatchPresenceRequest{UserIds: []string{bob.UserID}}))
	updates := make(chan presencev1.PresenceStatus, 64)
	go func() {
		for {
			r, err := watch.Recv()
			if err != nil {
				close(updates)
				return
			}
			updates <- r.GetPresence().GetStatus()
		}
	}()
	await := func(want presencev1.PresenceStatus, within time.Duration) {
		t.Helper()
		timeout := time.After(within)
		for {
			select {
			case st, ok := <-updates:
				if !ok {
					t.Fatal("watch ended")
				}
				if st == want {
					return
				}
			case <-timeout:
				t.Fatalf("alice never saw bob %v", want)
			}
		}
	}
	await(presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE, 5*time.Second)

	// Bob's stream is his heartbeat.
	r := e.receive(t, bob)
	<-r.backlog
	await(presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE, time.Second)
	r.cancel()
	await(presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE, 2*time.Second)

	// Offline, a burst of messages is one push with nothing in it but the wake-up.
	must(e.push.RegisterPushTarget(bob.ctx(t), pushSrv.Target("/sub/bob")))
	for range 5 {
		must(e.send(t, alice, bob, []byte("secret body")))
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(pushSrv.Payloads()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no push; protocol errors %v", pushSrv.ProtocolErrors())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got := pushSrv.Payloads(); len(got) != 1 || got[0] != `{"wake":1}` {
		t.Fatalf("pushes %q, want one wake-up", got)
	}

	// Online again: messages arrive on the stream, and no push is sent.
	r = e.receive(t, bob)
	await(presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE, time.Second)
	must(e.send(t, alice, bob, []byte("while online")))
	for d := r.next(t); string(d.GetPayload()) != "while online"; d = r.next(t) {
	}
	time.Sleep(300 * time.Millisecond)
	if n := pushSrv.Hits("/sub/bob"); n != 1 {
		t.Fatalf("%d pushes, want still 1", n)
	}
}
