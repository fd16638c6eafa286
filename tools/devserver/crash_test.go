package main

import (
	"context"
	"encoding/binary"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// server is the devserver running as a real child process.
type server struct {
	cmd  *exec.Cmd
	addr string
}

// devserverReady matches the line the devserver prints once it listens.
var devserverReady = regexp.MustCompile(`^guardyn: gRPC on (\S+), admin on `)

func startServer(t *testing.T, bin, dataDir string) *server {
	t.Helper()
	cmd, m := runBinary(t, bin, devserverReady, "-data-dir", dataDir, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0")
	return &server{cmd: cmd, addr: m[1]}
}

// TestKill9LosesNoAcknowledgedMessage sends bursts from many goroutines, kills the
// server with SIGKILL in the middle, restarts it on the same data dir and checks that
// every send that was acknowledged is delivered, exactly once after dropping duplicate
// message ids as clients do.
func TestKill9LosesNoAcknowledgedMessage(t *testing.T) {
	bin := buildBinary(t, "./tools/devserver")
	data := t.TempDir()
	srv := startServer(t, bin, data)
	ctx := context.Background()
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	authc := authv1.NewAuthServiceClient(conn)
	alice, err := rawdevice.Register(ctx, authc, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := rawdevice.Register(ctx, authc, "bob")
	if err != nil {
		t.Fatal(err)
	}
	msgc := messagingv1.NewMessagingServiceClient(conn)

	// 16 senders send numbered payloads until the server dies.
	var (
		mu    sync.Mutex
		acked = map[uint64]bool{}
		seq   atomic.Uint64
		wg    sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for {
				n := seq.Add(1)
				payload := binary.BigEndian.AppendUint64([]byte("crash-test-"), n)
				sctx, cancel := context.WithTimeout(alice.Context(ctx), 5*time.Second)
				_, err := msgc.SendMessage(sctx, rawdevice.SendRequest(bob.UserID, payload, bob.ID))
				cancel()
				if err != nil {
					return // the server is gone; this send was never acknowledged
				}
				mu.Lock()
				acked[n] = true
				mu.Unlock()
			}
		})
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 2000 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Wait()
	wg.Wait()
	conn.Close()
	t.Logf("%d sends acknowledged before kill -9", len(acked))

	srv = startServer(t, bin, data)
	conn, err = grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgc = messagingv1.NewMessagingServiceClient(conn)
	rctx, cancel := context.WithTimeout(bob.Context(ctx), 60*time.Second)
	defer cancel()
	stream, err := msgc.Receive(rctx)
	if err != nil {
		t.Fatal(err)
	}
	seenIDs := map[string]bool{}
	delivered := map[uint64]int{}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("receive after restart: %v", err)
		}
		var ids [][]byte
		for _, d := range resp.GetDeliveries() {
			ids = append(ids, d.GetMessageId())
			if seenIDs[string(d.GetMessageId())] {
				continue // a duplicate, dropped by id as clients do
			}
			seenIDs[string(d.GetMessageId())] = true
			p := d.GetPayload()
			if len(p) != len("crash-test-")+8 || !strings.HasPrefix(string(p), "crash-test-") {
				t.Fatalf("unexpected payload %q", p)
			}
			delivered[binary.BigEndian.Uint64(p[len("crash-test-"):])]++
		}
		if len(ids) > 0 {
			if _, err := msgc.AckMessages(bob.Context(ctx), &messagingv1.AckMessagesRequest{MessageIds: ids}); err != nil {
				t.Fatal(err)
			}
		}
		if resp.GetBacklogComplete() {
			break
		}
	}
	var lost []uint64
	for n := range acked {
		if delivered[n] != 1 {
			lost = append(lost, n)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged messages not delivered exactly once, e.g. %v", len(lost), len(acked), lost[:min(10, len(lost))])
	}
	t.Logf("all %d acknowledged messages delivered exactly once (%d unacknowledged sends also survived)", len(acked), len(delivered)-len(acked))
}
