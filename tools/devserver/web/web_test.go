package web_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/client/grpcweb"
	"github.com/guardyn/guardyn/libs/server"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/tools/devserver/web"
)

// slowPresence answers GetLastSeen once released.
type slowPresence struct {
	presencev1.UnimplementedPresenceServiceServer
	started, release chan struct{}
}

func (s *slowPresence) GetLastSeen(ctx context.Context, _ *presencev1.GetLastSeenRequest) (*presencev1.GetLastSeenResponse, error) {
	s.started <- struct{}{}
	select {
	case <-s.release:
		return &presencev1.GetLastSeenResponse{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A unary call that came through the web port and is running when the server stops
// finishes, as a native one does: grpc-go's drain would cut it at once.
func TestWebUnaryCallFinishesDuringDrain(t *testing.T) {
	svc := &slowPresence{started: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := server.New(server.Config{
		Register: func(r grpc.ServiceRegistrar) { presencev1.RegisterPresenceServiceServer(r, svc) },
		Web: func(g *grpc.Server) (http.Handler, error) {
			return web.NewHandler(g, web.Config{MaxMessageBytes: 1 << 20})
		},
		Logger:       slog.New(slog.DiscardHandler),
		DrainTimeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	defer func() { stop(); <-ran }()

	client := presencev1.NewPresenceServiceClient(grpcweb.New(nil, "http://"+srv.WebAddr().String(), grpcweb.GRPCWeb))
	called := make(chan error, 1)
	go func() {
		_, err := client.GetLastSeen(context.Background(), &presencev1.GetLastSeenRequest{})
		called <- err
	}()
	select {
	case <-svc.started:
	case <-time.After(20 * time.Second):
		t.Fatal("the call never reached the service")
	}
	stop()
	// The drain has begun once /readyz fails; then the handler returns.
	ready := "http://" + srv.AdminAddr().String() + "/readyz"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(ready)
		if err == nil {
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never began to drain")
		}
	}
	time.Sleep(100 * time.Millisecond) // let a drain that cuts calls cut this one
	close(svc.release)
	select {
	case err := <-called:
		if err != nil {
			t.Fatalf("web call in progress at shutdown: %v, want it to finish", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the call never returned")
	}
	if err := <-ran; err != nil {
		t.Fatalf("run: %v", err)
	}
	ran <- nil
}
