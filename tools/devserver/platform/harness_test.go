package platform_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/auth"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// env is a whole platform in this process, reached over real gRPC on loopback.
type env struct {
	dir  string
	conn *grpc.ClientConn
	auth authv1.AuthServiceClient
	msg  messagingv1.MessagingServiceClient
}

func start(t *testing.T) *env { return startWith(t, t.TempDir(), 0) }

func startWith(t *testing.T, dir string, inboxLimit int) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := platform.Start(ctx, platform.Config{
		DataDir: dir, GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), InboxLimit: inboxLimit,
	})
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
	return &env{dir: dir, conn: conn, auth: authv1.NewAuthServiceClient(conn), msg: messagingv1.NewMessagingServiceClient(conn)}
}

type device struct {
	username string
	userID   string
	id       uint32
	identity *keys.Identity
	tokens   *authv1.TokenPair
}

func (d *device) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.tokens.GetAccessToken())
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
	id := must(keys.GenerateIdentity())
	ik := id.Public().Bytes()
	resp := must(e.auth.Register(context.Background(), &authv1.RegisterRequest{
		Username: username, IdentityKey: ik, DeviceName: "test",
		Signature: must(id.Sign(keys.ContextRegistration, auth.RegistrationStatement(username, ik))),
	}))
	d := &device{username: username, userID: resp.GetUserId(), id: resp.GetDeviceId(), identity: id}
	e.login(t, d)
	return d
}

func (e *env) login(t *testing.T, d *device) {
	t.Helper()
	ch := must(e.auth.GetLoginChallenge(context.Background(), &authv1.GetLoginChallengeRequest{Username: d.username, DeviceId: d.id}))
	sig := must(d.identity.Sign(keys.ContextLoginChallenge, auth.LoginStatement(d.username, d.id, ch.GetNonce())))
	resp := must(e.auth.Login(context.Background(), &authv1.LoginRequest{Username: d.username, DeviceId: d.id, Nonce: ch.GetNonce(), Signature: sig}))
	d.tokens = resp.GetTokens()
}

// link adds a second device to d's account, approved by d.
func (e *env) link(t *testing.T, d *device) *device {
	t.Helper()
	id := must(keys.GenerateIdentity())
	ik := id.Public().Bytes()
	start := must(e.auth.StartDeviceLink(context.Background(), &authv1.StartDeviceLinkRequest{
		Username: d.username, IdentityKey: ik, DeviceName: "second",
		Signature: must(id.Sign(keys.ContextDeviceLink, auth.DeviceLinkStatement(d.username, ik, "second"))),
	}))
	approved := must(e.auth.ApproveDeviceLink(d.ctx(t), &authv1.ApproveDeviceLinkRequest{LinkId: start.GetLinkId()}))
	nd := &device{username: d.username, userID: d.userID, id: approved.GetDeviceId(), identity: id}
	e.login(t, nd)
	return nd
}

func clientID() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

// send stores one opaque envelope per listed device of to.
func (e *env) send(t *testing.T, from *device, to *device, body []byte, devices ...uint32) (*messagingv1.SendMessageResponse, error) {
	t.Helper()
	if len(devices) == 0 {
		devices = []uint32{to.id}
	}
	req := &messagingv1.SendMessageRequest{RecipientUserId: to.userID, ClientMessageId: clientID()}
	for _, d := range devices {
		req.Envelopes = append(req.Envelopes, &messagingv1.DeviceEnvelope{DeviceId: d, SealedEnvelope: body})
	}
	return e.msg.SendMessage(from.ctx(t), req)
}

// receiver reads a device's Receive stream in the background.
type receiver struct {
	deliveries chan *messagingv1.Delivery
	backlog    chan struct{}
	errs       chan error
	cancel     context.CancelFunc
}

func (e *env) receive(t *testing.T, d *device) *receiver {
	t.Helper()
	ctx, cancel := context.WithCancel(d.ctx(t))
	stream, err := e.msg.Receive(ctx, &messagingv1.ReceiveRequest{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &receiver{deliveries: make(chan *messagingv1.Delivery, 10000), backlog: make(chan struct{}), errs: make(chan error, 1), cancel: cancel}
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
