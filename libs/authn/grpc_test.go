package authn

import (
	"context"

	"google.golang.org/grpc"
)

type grpcServerStream = grpc.ServerStream

var (
	grpcUnaryInfo  = grpc.UnaryServerInfo{FullMethod: "/guardyn.test.Svc/Call"}
	grpcStreamInfo = grpc.StreamServerInfo{FullMethod: "/guardyn.test.Svc/Stream"}
)

// fakeStream is the minimum ServerStream the stream interceptor touches.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *fakeStream) Context() context.Context { return s.ctx }
