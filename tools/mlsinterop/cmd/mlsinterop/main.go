// Command mlsinterop serves Guardyn's MLS (libs/crypto/mls) as the MLS
// working group's MLSClient gRPC service, for the working group's interop
// test runner (docs/crypto/mls.md, "Interop endpoint"):
//
//	go run ./tools/mlsinterop/cmd/mlsinterop -addr 127.0.0.1:50051
//
// It listens without TLS and keeps every state in memory: run it on
// loopback, for tests only.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/tools/mlsinterop"
	pb "github.com/guardyn/guardyn/tools/mlsinterop/mlsclientpb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "listen address (host:port)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "mlsinterop:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	pb.RegisterMLSClientServer(srv, mlsinterop.NewServer(nil))
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	fmt.Fprintf(os.Stderr, "mlsinterop: serving MLSClient on %s\n", lis.Addr())
	return srv.Serve(lis)
}
