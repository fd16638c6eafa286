package client

import "google.golang.org/grpc"

// Flow-control windows of an app's connection, fixed as the server fixes its own
// (libs/server): 1 MiB per stream holds the largest payload the APIs deliver at once, 4 MiB
// per connection what its streams may have unread.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// DialOptions are the gRPC options of an app's native connection to a Guardyn server, to
// pass to grpc.NewClient beside the transport credentials.
//
// They fix the flow-control windows. A grpc-go client otherwise estimates the
// bandwidth-delay product by sending the server a PING whenever data arrives and no PING
// is outstanding: a device that gets one message now and then, the common case, answers
// every delivery with a PING, and the server every PING with a write of its own. That
// doubled the server's socket writes per message with many devices each receiving little
// (docs/perf-throughput.md, issue 17), and on a phone it is an uplink packet per message.
// Fixed windows turn the probing off; with messages of a few KiB there is no bandwidth to
// find.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	}
}
