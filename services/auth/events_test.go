package auth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/kv"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	"github.com/guardyn/guardyn/services/auth"
)

// restartWithBus starts a second auth service over the env's store, as the process
// restarted after a crash would, publishing on a real embedded JetStream, and runs its
// event replayer. It returns the bus for consuming.
func (e *env) restartWithBus(t *testing.T) (*auth.Server, *bus.Bus) {
	t.Helper()
	ctx := context.Background()
	b, err := bus.StartEmbedded(ctx, filepath.Join(t.TempDir(), "nats"), bus.EmbeddedOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	events, err := auth.NewBusEvents(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	_, tokenKey, _ := ed25519.GenerateKey(nil)
	_, certKey, _ := ed25519.GenerateKey(nil)
	svc, err := auth.New(auth.Config{Store: e.store, TokenKey: tokenKey, CertificateKey: certKey, Events: events, Now: e.clock.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.ReplayEvents(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("ReplayEvents returned %v", err)
		}
	})
	return svc, b
}

// nextEvent reads the next message on subject from the auth event stream.
func nextEvent(t *testing.T, b *bus.Bus, subject string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := b.JetStream().CreateOrUpdateConsumer(ctx, bus.StreamAuthEvents, jetstream.ConsumerConfig{
		Durable: "test", FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(25 * time.Second))
	if err != nil {
		t.Fatalf("no %s event on the bus: %v", subject, err)
	}
	if err := msg.Ack(); err != nil {
		t.Fatal(err)
	}
	return msg.Data()
}

// TestRemovalEventSurvivesABusOutageAndRestart (issue 18, finding 6): the bus is down
// when a device is removed; the removal still succeeds, and the DeviceRemoved event,
// committed with it, reaches JetStream once the restarted service replays its outbox.
// Before, the event was logged and lost, leaving the removed device's inbox alive.
func TestRemovalEventSurvivesABusOutageAndRestart(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	phone := e.linkDevice(t, alice).id
	e.events.mu.Lock()
	e.events.down = true
	e.events.mu.Unlock()
	if _, err := e.client.RemoveDevice(alice.ctx(), &authv1.RemoveDeviceRequest{DeviceId: phone}); err != nil {
		t.Fatalf("RemoveDevice while the bus is down: %v", err)
	}
	_, b := e.restartWithBus(t)
	var ev eventsv1.DeviceRemoved
	if err := proto.Unmarshal(nextEvent(t, b, bus.SubjectDeviceRemoved), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetUserId() != alice.userID || ev.GetDeviceId() != phone {
		t.Fatalf("replayed %v, want alice's device %d", &ev, phone)
	}
}

// TestPublishedEventsLeaveTheOutbox: a published event stays in the outbox for the
// linger time (JetStream may not have synced it), is published again by a restarted
// service, and is then deleted: a deleted account's id does not stay in the store.
func TestPublishedEventsLeaveTheOutbox(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	if _, err := e.client.DeleteAccount(alice.ctx(), &authv1.DeleteAccountRequest{ConfirmUsername: "alice"}); err != nil {
		t.Fatal(err)
	}
	if len(e.events.deleted) != 1 {
		t.Fatalf("AccountDeleted published %d times, want 1 at once", len(e.events.deleted))
	}
	outboxHolds := func() bool {
		found := false
		if err := e.store.View(context.Background(), func(tx kv.Tx) error {
			pairs, err := kv.ScanPrefix(tx, []byte("auth/outbox/"), 0)
			for _, p := range pairs {
				found = found || bytes.Contains(p.Value, []byte(alice.userID))
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return found
	}
	if !outboxHolds() {
		t.Fatal("the published event left the outbox before JetStream's sync interval")
	}
	_, b := e.restartWithBus(t)
	var ev eventsv1.AccountDeleted
	if err := proto.Unmarshal(nextEvent(t, b, bus.SubjectAccountDeleted), &ev); err != nil || ev.GetUserId() != alice.userID {
		t.Fatalf("the restarted service replayed %v, %v", &ev, err)
	}
	// Past the linger time the next poll (every 10 s) deletes it. The clock keeps moving
	// because the replayer may record the redelivery after an advance.
	deadline := time.Now().Add(40 * time.Second)
	for outboxHolds() {
		if time.Now().After(deadline) {
			t.Fatal("the event was still in the outbox long after the linger time")
		}
		e.clock.Advance(6 * time.Minute)
		time.Sleep(200 * time.Millisecond)
	}
}
