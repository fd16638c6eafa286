package messaging_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// TestAuthEventsDeleteQueuedMessages publishes the auth service's events on the real
// JetStream stream and checks that the inboxes they name are emptied: a removed device's
// queue, then every queue of a deleted account.
func TestAuthEventsDeleteQueuedMessages(t *testing.T) {
	e := newHandlerEnv(t)
	ctx := context.Background()
	for range 3 {
		req := &messagingv1.SendMessageRequest{RecipientUserId: bobID, ClientMessageId: newClientID(), Envelopes: []*messagingv1.DeviceEnvelope{
			{DeviceId: 1, SealedEnvelope: []byte("x")}, {DeviceId: 2, SealedEnvelope: []byte("x")}, {DeviceId: 3, SealedEnvelope: []byte("x")}}}
		if _, err := e.svc.SendMessage(asAlice(), req); err != nil {
			t.Fatal(err)
		}
	}
	consumer, err := e.svc.ConsumeAuthEvents(ctx, e.bus)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Stop()
	publish := func(subject string, m proto.Message) {
		data, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.bus.Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}
	count := func(device uint32) int {
		n, err := e.inboxes.Count(ctx, inbox(bobID, device))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitEmpty := func(devices ...uint32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, d := range devices {
			for count(d) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("bob's device %d still holds %d messages", d, count(d))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}

	publish(bus.SubjectDeviceRemoved, &eventsv1.DeviceRemoved{UserId: bobID, DeviceId: 3})
	waitEmpty(3)
	if count(1) != 3 || count(2) != 3 {
		t.Fatalf("removing device 3 touched the others: %d and %d messages left", count(1), count(2))
	}
	publish(bus.SubjectAccountDeleted, &eventsv1.AccountDeleted{UserId: bobID, DeviceIds: []uint32{1, 2}})
	waitEmpty(1, 2)
}

func newClientID() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

// failureLog records when the service logs a failed auth event.
type failureLog struct {
	mu sync.Mutex
	at []time.Time
}

func (l *failureLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *failureLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *failureLog) WithGroup(string) slog.Handler            { return l }
func (l *failureLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "messaging: auth event failed; will be redelivered" {
		l.mu.Lock()
		l.at = append(l.at, r.Time)
		l.mu.Unlock()
	}
	return nil
}

func (l *failureLog) times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.at...)
}

// TestFailingAuthEventBacksOff: while the message store refuses to delete a removed
// device's inbox, the event is retried ever more rarely, not in a tight loop (before: an
// immediate Nak, hundreds of attempts a second).
func TestFailingAuthEventBacksOff(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	groups, err := kvembedded.Open(filepath.Join(dir, kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer groups.Close()
	inboxes, err := msgembedded.Open(filepath.Join(dir, msgembedded.DirName), msgembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.StartEmbedded(ctx, filepath.Join(dir, "nats"), bus.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	failures := &failureLog{}
	svc, err := messaging.New(messaging.Config{
		Inboxes: inboxes, Groups: groups, Directory: staticDirectory{bobID: {1, 2, 3}}, Conn: b.Conn(),
		Logger: slog.New(failures),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	inboxes.Close() // every DeleteInbox now fails
	consumer, err := svc.ConsumeAuthEvents(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Stop()
	data, err := proto.Marshal(&eventsv1.DeviceRemoved{UserId: bobID, DeviceId: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, bus.SubjectDeviceRemoved, data); err != nil {
		t.Fatal(err)
	}
	// Attempts at 0, 0.25, 0.75 and 1.75 s: wait for the fourth.
	deadline := time.Now().Add(15 * time.Second)
	for len(failures.times()) < 4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	at := failures.times()
	if len(at) < 4 {
		t.Fatalf("the failing event was tried %d times in 15 s; it must be retried", len(at))
	}
	for i := 1; i < 4; i++ {
		want := bus.Backoff(uint64(i), 250*time.Millisecond, 30*time.Second)
		if gap := at[i].Sub(at[i-1]); gap < want*9/10 {
			t.Errorf("attempt %d came %v after the previous, want at least %v (%d attempts in all)", i+1, gap, want, len(at))
		}
	}
}
