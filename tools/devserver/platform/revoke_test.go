package platform_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/ratelimit"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// revokeWithin is how soon after RemoveDevice returns a removed device must be shut out:
// its next call refused, its open streams ended.
const revokeWithin = time.Second

// TestRemovedDeviceIsShutOutWithinOneSecond removes a device that has a Receive stream
// and a SendStream open, and checks over real gRPC that its next call is refused and
// both streams end within one second of RemoveDevice returning.
func TestRemovedDeviceIsShutOutWithinOneSecond(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	bob2 := e.link(t, bob)
	r := e.receive(t, bob2)
	<-r.backlog
	sends := must(e.msg.SendStream(bob2.ctx(t)))
	if err := sends.Send(&messagingv1.SendStreamRequest{RequestId: 1, Message: rawdeviceSend(alice, "hi")}); err != nil {
		t.Fatal(err)
	}
	if resp := must(sends.Recv()); resp.GetSent() == nil {
		t.Fatalf("send before the removal failed: %v", resp.GetError())
	}
	// Warm every cache that could remember bob2 as present.
	must(e.auth.ListDevices(bob2.ctx(t), &authv1.ListDevicesRequest{}))
	must(e.msg.AckMessages(bob2.ctx(t), &messagingv1.AckMessagesRequest{}))

	must(e.auth.RemoveDevice(bob.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: bob2.ID}))
	removed := time.Now()

	// The next call, to either service, is refused at once.
	_, err := e.auth.ListDevices(bob2.ctx(t), &authv1.ListDevicesRequest{})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	_, err = e.msg.AckMessages(bob2.ctx(t), &messagingv1.AckMessagesRequest{})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")

	// The open Receive stream ends.
	select {
	case err := <-r.errs:
		wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	case <-time.After(time.Until(removed.Add(revokeWithin))):
		t.Fatalf("the removed device's Receive stream was still open %v after the removal", revokeWithin)
	}
	// The open SendStream refuses the next send.
	if err := sends.Send(&messagingv1.SendStreamRequest{RequestId: 2, Message: rawdeviceSend(alice, "after")}); err == nil {
		resp, err := sends.Recv()
		if err == nil {
			t.Fatalf("a removed device sent on its open stream: %v", resp)
		}
		wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	}
	if elapsed := time.Since(removed); elapsed > revokeWithin {
		t.Fatalf("shutting the removed device out took %v, want under %v", elapsed, revokeWithin)
	}
}

// TestRemovalEndsAStreamWithAFullEventBuffer removes a device whose Receive stream is
// behind: the client stopped reading, so the stream's live-event buffer overflowed. The
// removal must still end the stream: before the fix it was dropped with the overflowing
// deliveries, and the stream went on serving a removed device.
func TestRemovalEndsAStreamWithAFullEventBuffer(t *testing.T) {
	e := startWith(t, func(c *platform.Config) { c.Limits = ratelimit.Policy{} })
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	bob2 := e.link(t, bob)
	ctx, cancel := context.WithCancel(bob2.ctx(t))
	defer cancel()
	stream := must(e.msg.Receive(ctx))
	for {
		if must(stream.Recv()).GetBacklogComplete() {
			break
		}
	}
	// Not reading: the deliveries fill the transport's windows, the server's sender
	// blocks and the live events pile up beyond the stream's buffer.
	body := bytes.Repeat([]byte("x"), 200<<10)
	for range 64 {
		must(e.send(t, alice, bob, body, bob.ID, bob2.ID))
	}
	must(e.auth.RemoveDevice(bob.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: bob2.ID}))
	// Resume reading: what was sent drains, then the stream must end.
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	case <-time.After(15 * time.Second):
		t.Fatal("the removed device's stream is still open")
	}
}

// TestRemovalIsSeenWithoutChangeEvents: every service checks a call against the auth
// store itself, so a removed device is refused at once even when no change event reached
// the cached directory (lost, or not yet arrived). Before, the all-in-one server checked
// revocation through messaging's cache, which trusted a device list for 30 s.
func TestRemovalIsSeenWithoutChangeEvents(t *testing.T) {
	e := start(t)
	bob := e.register(t, "bob")
	bob2 := e.link(t, bob)
	must(e.auth.ListDevices(bob2.ctx(t), &authv1.ListDevicesRequest{}))
	must(e.msg.AckMessages(bob2.ctx(t), &messagingv1.AckMessagesRequest{}))
	sends := must(e.msg.SendStream(bob2.ctx(t)))
	if err := sends.Send(&messagingv1.SendStreamRequest{RequestId: 1, Message: rawdeviceSend(bob, "hi")}); err != nil {
		t.Fatal(err)
	}
	if resp := must(sends.Recv()); resp.GetSent() == nil {
		t.Fatalf("send before the removal failed: %v", resp.GetError())
	}
	e.p.LoseDeviceEventsForTest()
	must(e.auth.RemoveDevice(bob.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: bob2.ID}))
	_, err := e.auth.ListDevices(bob2.ctx(t), &authv1.ListDevicesRequest{})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	_, err = e.msg.AckMessages(bob2.ctx(t), &messagingv1.AckMessagesRequest{})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	// The open SendStream refuses sends within a second, too.
	removed := time.Now()
	for id := uint64(2); ; id++ {
		if err := sends.Send(&messagingv1.SendStreamRequest{RequestId: id, Message: rawdeviceSend(bob, "after")}); err == nil {
			resp, err := sends.Recv()
			if err != nil {
				wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
				break
			}
			if time.Since(removed) > revokeWithin {
				t.Fatalf("a removed device still sends on its open stream %v after the removal: %v", revokeWithin, resp)
			}
		} else {
			_, err := sends.Recv()
			wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if elapsed := time.Since(removed); elapsed > revokeWithin {
		t.Fatalf("the open SendStream was refused only after %v", elapsed)
	}
}

// TestDirectoryOutageIsUnavailable: when the auth service does not answer device-list
// requests, a send is refused as Unavailable (retry), not as an internal error, and no
// device is told it was removed.
func TestDirectoryOutageIsUnavailable(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	e.p.StopDirectoryForTest()
	_, err := e.send(t, alice, bob, []byte("x"))
	wantErr(t, err, codes.Unavailable, "DIRECTORY_UNAVAILABLE")
}

// TestRemovalEndsAStreamWhoseEventWasLost: the Removed live event that ends a removed
// device's Receive stream travels on core NATS between messaging instances and can be
// lost; the periodic recheck of open streams still ends it.
func TestRemovalEndsAStreamWhoseEventWasLost(t *testing.T) {
	e := startWith(t, func(c *platform.Config) { c.StreamRecheck = 200 * time.Millisecond })
	bob := e.register(t, "bob")
	bob2 := e.link(t, bob)
	r := e.receive(t, bob2)
	<-r.backlog
	e.p.LoseDeviceEventsForTest()
	must(e.auth.RemoveDevice(bob.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: bob2.ID}))
	select {
	case err := <-r.errs:
		wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	case <-time.After(10 * time.Second):
		t.Fatal("the removed device's stream outlived its lost Removed event")
	}
}
