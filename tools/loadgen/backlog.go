package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

type backlogFlags struct {
	server     serverFlags
	devices    int
	backlogMiB int
	messageKiB int
	responses  int
	duration   time.Duration
	maxRSSMiB  int
}

// backlogResult is what a backlog run measured.
type backlogResult struct {
	baseRSS, peakRSS int64 // bytes: after the restart, and the most seen while reconnecting
	reconnects       int64
	failed           int64 // streams the server ended with an error
	firstErr         error // the first of those errors
	received         int64 // bytes of payload
}

func runBacklog(ctx context.Context, args []string) error {
	var f backlogFlags
	fs := flag.NewFlagSet("backlog", flag.ContinueOnError)
	fs.IntVar(&f.devices, "devices", 100, "devices, each holding the whole backlog")
	fs.IntVar(&f.backlogMiB, "backlog-mib", 64, "backlog of each device in MiB (the disk holds devices × this)")
	fs.IntVar(&f.messageKiB, "message-kib", 256, "size of each group message in KiB (at most 256, the API's limit)")
	fs.IntVar(&f.responses, "responses", 4, "responses each device reads before it drops its stream and reconnects")
	fs.DurationVar(&f.duration, "duration", 20*time.Second, "how long the devices reconnect")
	fs.IntVar(&f.maxRSSMiB, "max-rss-mib", 0, "fail if the server's RSS exceeds this many MiB while the devices reconnect (0: report only)")
	f.server.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := backlog(ctx, f)
	if err != nil {
		return err
	}
	if res.failed > 0 {
		return fmt.Errorf("%d of %d streams failed, the first with: %w", res.failed, res.reconnects, res.firstErr)
	}
	if f.maxRSSMiB > 0 && res.peakRSS > int64(f.maxRSSMiB)<<20 {
		return fmt.Errorf("server RSS reached %.1f MiB, over the bound of %d MiB", mib(res.peakRSS), f.maxRSSMiB)
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// backlog queues a backlog of group messages for every device, restarts the server, and
// has every device reconnect in a loop without acknowledging anything, each time reading
// a few responses of its backlog; it samples the server's resident memory meanwhile. The
// memory a stream takes must not grow with the backlog it drains: the server reads and
// sends a bounded number of bytes at a time.
func backlog(ctx context.Context, f backlogFlags) (*backlogResult, error) {
	if f.devices < 1 || f.devices > 999 {
		return nil, errors.New("-devices must be 1 to 999 (one group holds them all)")
	}
	if f.messageKiB < 1 || f.messageKiB > 256 {
		return nil, errors.New("-message-kib must be 1 to 256")
	}
	messages := f.backlogMiB << 10 / f.messageKiB
	if messages < 1 || messages > 10000 {
		return nil, errors.New("-backlog-mib / -message-kib must make 1 to 10000 messages (the inbox limit)")
	}
	if f.server.addr != "" {
		return nil, errors.New("backlog restarts the server and measures its memory: it needs a child server, not -server")
	}
	srv, err := f.server.start(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	setup := newConnPool(srv.addr, 8)
	defer setup.Close()
	conn, err := setup.get()
	if err != nil {
		return nil, err
	}
	run := time.Now().UnixNano() % 1e9
	sender, err := rawdevice.Register(ctx, authv1.NewAuthServiceClient(conn), fmt.Sprintf("b%x_sender", run))
	if err != nil {
		return nil, err
	}
	devices := make([]*rawdevice.Device, f.devices)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range devices {
		g.Go(func() error {
			c, err := setup.get()
			if err != nil {
				return err
			}
			devices[i], err = rawdevice.Register(gctx, authv1.NewAuthServiceClient(c), fmt.Sprintf("b%x_%d", run, i))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("register devices: %w", err)
	}
	members := []*commonv1.DeviceAddress{{UserId: sender.UserID, DeviceId: sender.ID}}
	for _, d := range devices {
		members = append(members, &commonv1.DeviceAddress{UserId: d.UserID, DeviceId: d.ID})
	}
	msg := messagingv1.NewMessagingServiceClient(conn)
	gid := fmt.Appendf(nil, "backlog-%x", run)
	if _, err := msg.CreateGroup(sender.Context(ctx), &messagingv1.CreateGroupRequest{GroupId: gid, Members: members, GroupInfo: []byte("gi")}); err != nil {
		return nil, fmt.Errorf("create group: %w", err)
	}
	fmt.Printf("loadgen: queuing %d group messages of %d KiB for %d devices (%d MiB each, %.1f GiB in all)\n",
		messages, f.messageKiB, f.devices, messages*f.messageKiB>>10, float64(messages*f.messageKiB*f.devices)/(1<<20))
	start := time.Now()
	payload := mlsframe.PrivateMessage(gid, 0, mlsframe.Application, f.messageKiB<<10)
	var next atomic.Int64
	g, gctx = errgroup.WithContext(ctx)
	for range 4 {
		g.Go(func() error {
			for n := next.Add(1); n <= int64(messages); n = next.Add(1) {
				if _, err := msg.SendGroupMessage(sender.Context(gctx), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: payload, ClientMessageId: rawdevice.NewMessageID()}); err != nil {
					return fmt.Errorf("queue group message %d: %w", n, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	fmt.Printf("queued in %v; restarting the server\n", time.Since(start).Round(time.Millisecond))

	if err := srv.restart(false); err != nil {
		return nil, err
	}
	res := &backlogResult{}
	if res.baseRSS, err = srv.rss(); err != nil {
		return nil, err
	}
	res.peakRSS = res.baseRSS
	conns := newConnPool(srv.addr, 0)
	defer conns.Close()
	// Canceled rather than given a deadline: a deadline travels with each stream, and the
	// server may end a stream on it just before this process notices, which would look
	// like a failure.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	time.AfterFunc(f.duration, cancel)
	var reconnects, failed, received atomic.Int64
	var firstErr atomic.Pointer[error]
	g, gctx = errgroup.WithContext(runCtx)
	for _, d := range devices {
		c, err := conns.get()
		if err != nil {
			return nil, err
		}
		g.Go(func() error {
			for gctx.Err() == nil {
				n, err := readSome(gctx, messagingv1.NewMessagingServiceClient(c), d, f.responses)
				received.Add(n)
				if errors.Is(err, errBacklogEnded) {
					return err
				}
				if err != nil && gctx.Err() == nil {
					// A stream that fails (as every one did when a response could
					// exceed the transport's limits) is retried, as clients do.
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
				reconnects.Add(1)
			}
			return nil
		})
	}
	sample := time.NewTicker(20 * time.Millisecond)
	defer sample.Stop()
	for done := false; !done; {
		select {
		case <-gctx.Done():
			done = true
		case <-sample.C:
		}
		rss, err := srv.rss()
		if err != nil {
			return nil, err
		}
		res.peakRSS = max(res.peakRSS, rss)
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res.reconnects, res.failed, res.received = reconnects.Load(), failed.Load(), received.Load()
	if p := firstErr.Load(); p != nil {
		res.firstErr = *p
		fmt.Printf("the first stream that failed: %v\n", res.firstErr)
	}
	fmt.Printf("%d devices reconnected %d times in %v (%d streams failed) and received %.1f MiB without acknowledging\n", f.devices, res.reconnects, f.duration, res.failed, mib(res.received))
	fmt.Printf("server RSS: %.1f MiB after the restart, at most %.1f MiB while reconnecting\n", mib(res.baseRSS), mib(res.peakRSS))
	return res, nil
}

var errBacklogEnded = errors.New("a backlog ended: the devices must hold more than they read")

// readSome opens d's Receive stream with the clients' receive limit, reads up to n
// responses and drops the stream. It returns the payload bytes it received.
func readSome(ctx context.Context, c messagingv1.MessagingServiceClient, d *rawdevice.Device, n int) (int64, error) {
	ctx, cancel := context.WithCancel(d.Context(ctx))
	defer cancel()
	stream, err := c.Receive(ctx, grpc.MaxCallRecvMsgSize(messagingv1.MaxReceiveResponseSize))
	if err != nil {
		return 0, err
	}
	var got int64
	for range n {
		resp, err := stream.Recv()
		if status.Code(err) == codes.Aborted {
			return got, nil // superseded: another stream of the device took over
		}
		if err != nil {
			return got, fmt.Errorf("receive: %w", err)
		}
		for _, dl := range resp.GetDeliveries() {
			got += int64(len(dl.GetPayload()))
		}
		if resp.GetBacklogComplete() {
			return got, errBacklogEnded
		}
	}
	return got, nil
}
