package platform_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// env is a whole platform in this process, reached over real gRPC on loopback.
type env struct {
	p    *platform.Platform
	dir  string
	conn *grpc.ClientConn
	auth authv1.AuthServiceClient
	msg  messagingv1.MessagingServiceClient
	pres presencev1.PresenceServiceClient
	push notificationv1.NotificationServiceClient
}

func start(t *testing.T) *env { return startWith(t, func(*platform.Config) {}) }

// startWith starts a platform on a fresh data dir with the config adjusted by tune.
func startWith(t *testing.T, tune func(*platform.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := platform.Config{
		DataDir: dir, GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
	}
	tune(&cfg)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := platform.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("platform run: %v", err)
		}
	})
	conn, err := grpc.NewClient(p.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{p: p, dir: dir, conn: conn, auth: authv1.NewAuthServiceClient(conn), msg: messagingv1.NewMessagingServiceClient(conn),
		pres: presencev1.NewPresenceServiceClient(conn), push: notificationv1.NewNotificationServiceClient(conn)}
}

// device is a logged-in device driven over the raw API.
type device struct{ *rawdevice.Device }

func (d *device) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return d.Context(ctx)
}

// must returns v, panicking on err: setup steps that cannot fail in a healthy platform.
// The panic fails the test with a stack pointing at the step.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func (e *env) register(t *testing.T, username string) *device {
	t.Helper()
	return &device{must(rawdevice.Register(context.Background(), e.auth, username))}
}

// link adds a second device to d's account, approved by d.
func (e *env) link(t *testing.T, d *device) *device {
	t.Helper()
	return &device{must(rawdevice.Link(context.Background(), e.auth, d.Device, "second"))}
}

func clientID() []byte { return rawdevice.NewMessageID() }

// send stores one opaque envelope per listed device of to.
func (e *env) send(t *testing.T, from *device, to *device, body []byte, devices ...uint32) (*messagingv1.SendMessageResponse, error) {
	t.Helper()
	if len(devices) == 0 {
		devices = []uint32{to.ID}
	}
	return e.msg.SendMessage(from.ctx(t), rawdevice.SendRequest(to.UserID, body, devices...))
}

// receiver reads a device's Receive stream in the background.
type receiver struct {
	stream     grpc.BidiStreamingClient[messagingv1.ReceiveRequest, messagingv1.ReceiveResponse]
	deliveries chan *messagingv1.Delivery
	backlog    chan struct{}
	errs       chan error
	cancel     context.CancelFunc
}

func (e *env) receive(t *testing.T, d *device) *receiver {
	t.Helper()
	ctx, cancel := context.WithCancel(d.ctx(t))
	stream, err := e.msg.Receive(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &receiver{stream: stream, deliveries: make(chan *messagingv1.Delivery, 10000), backlog: make(chan struct{}), errs: make(chan error, 1), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		backlogDone := false
		for {
			resp, err := stream.Recv()
			if err != nil {
				r.errs <- err
				return
			}
			for _, d := range resp.GetDeliveries() {
				r.deliveries <- d
			}
			if resp.GetBacklogComplete() && !backlogDone {
				backlogDone = true
				close(r.backlog)
			}
		}
	}()
	return r
}

// ack acknowledges deliveries on the stream itself.
func (r *receiver) ack(t *testing.T, ids ...[]byte) {
	t.Helper()
	if err := r.stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: ids}); err != nil {
		t.Fatal(err)
	}
}

// next waits for the next delivery.
func (r *receiver) next(t *testing.T) *messagingv1.Delivery {
	t.Helper()
	select {
	case d := <-r.deliveries:
		return d
	case err := <-r.errs:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
	}
	return nil
}

// none asserts that nothing arrives for a short while.
func (r *receiver) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case d := <-r.deliveries:
		t.Fatalf("unexpected delivery %v", d)
	case <-time.After(wait):
	}
}
