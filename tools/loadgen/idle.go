package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

func runIdle(ctx context.Context, args []string) error {
	var sf serverFlags
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	sf.register(fs)
	devices := fs.Int("devices", 10000, "devices that each hold one open Receive stream")
	var shared int
	registerConns(fs, &shared)
	settle := fs.Duration("settle", 5*time.Second, "wait after the last stream opened before reading the server's memory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseFileLimit()
	srv := &child{addr: sf.addr}
	if sf.addr == "" {
		var err error
		if srv, err = sf.start(ctx); err != nil {
			return err
		}
		defer srv.stop()
	}

	// Register the devices first (the server's memory grows with accounts too), then
	// read the baseline, then open the streams.
	fmt.Printf("loadgen: registering %d devices…\n", *devices)
	setupConn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer setupConn.Close()
	authc := authv1.NewAuthServiceClient(setupConn)
	devs := make([]*rawdevice.Device, *devices)
	run := time.Now().UnixNano() % 1e9
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2 * runtime.NumCPU())
	for i := range devs {
		g.Go(func() error {
			var err error
			devs[i], err = rawdevice.Register(gctx, authc, fmt.Sprintf("idle%x_%d", run, i))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	time.Sleep(*settle)
	before, err := srv.rss()
	if err != nil && srv.cmd != nil {
		return err
	}

	conns := newConnPool(srv.addr, shared)
	defer conns.Close()
	fmt.Printf("loadgen: opening %d Receive streams, %s…\n", *devices, conns.describe())
	var open atomic.Int64
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx = errgroup.WithContext(streamCtx)
	g.SetLimit(64)
	for i, d := range devs {
		g.Go(func() error {
			c, err := conns.get()
			if err != nil {
				return err
			}
			stream, err := messagingv1.NewMessagingServiceClient(c).Receive(d.Context(streamCtx))
			if err != nil {
				return err
			}
			resp, err := stream.Recv()
			if err != nil {
				return fmt.Errorf("stream %d: %w", i, err)
			}
			if !resp.GetBacklogComplete() {
				return fmt.Errorf("stream %d: expected an empty backlog", i)
			}
			open.Add(1)
			go func() {
				for {
					if _, err := stream.Recv(); err != nil {
						return
					}
				}
			}()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Printf("open streams: %d\n", open.Load())
	if srv.cmd == nil {
		fmt.Println("server memory: not measured (a running server was given with -server); press Ctrl-C to close the streams")
		<-ctx.Done()
		return nil
	}
	time.Sleep(*settle)
	after, err := srv.rss()
	if err != nil {
		return err
	}
	per := float64(after-before) / float64(open.Load())
	fmt.Printf("server RSS: %.1f MiB before, %.1f MiB with the streams open\n", float64(before)/(1<<20), float64(after)/(1<<20))
	fmt.Printf("server memory per idle connected device: %.1f KiB\n", per/1024)
	return nil
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every device holds a
// connection.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
