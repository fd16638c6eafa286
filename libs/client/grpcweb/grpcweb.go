// Package grpcweb calls a Guardyn web port as a browser does (the web app's transport, and the tests'): it is a
// grpc.ClientConnInterface that sends each call over gRPC-Web (or the Connect protocol)
// with connectrpc.com/connect, so the generated gRPC clients of proto/ work unchanged over
// HTTP/1.1. Errors come back as gRPC status errors with their details, so that a test can
// compare a web call's failure with a native one's code for code and reason for reason.
//
// It carries unary and server-streaming calls only, the kinds a browser can make; a
// client-streaming or bidirectional call fails with UNIMPLEMENTED before anything is sent.
package grpcweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Protocol chooses the wire protocol of a Conn.
type Protocol int

const (
	GRPCWeb Protocol = iota // gRPC-Web, binary (application/grpc-web+proto)
	Connect                 // the Connect protocol, binary (application/proto)
)

// Conn sends calls to one web base URL, such as "http://127.0.0.1:7445".
type Conn struct {
	http    connect.HTTPClient
	base    string
	options []connect.ClientOption
}

var _ grpc.ClientConnInterface = (*Conn)(nil)

// New returns a Conn to base over client (http.DefaultClient when nil). Extra options,
// such as connect.WithSendGzip(), apply to every call.
func New(client connect.HTTPClient, base string, p Protocol, options ...connect.ClientOption) *Conn {
	if client == nil {
		client = http.DefaultClient
	}
	opts := []connect.ClientOption{connect.WithCodec(rawCodec{})}
	if p == GRPCWeb {
		opts = append(opts, connect.WithGRPCWeb())
	}
	return &Conn{http: client, base: strings.TrimSuffix(base, "/"), options: append(opts, options...)}
}

// raw is a message already encoded: the generated clients hand Conn proto messages, and
// connect's generic client needs one concrete type for every method.
type raw struct{ b []byte }

// rawCodec passes encoded protobuf through under the name "proto".
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

// Marshal and Unmarshal also see the protocol's own messages (gRPC-Web's status details).
func (rawCodec) Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case *raw:
		return v.b, nil
	case proto.Message:
		return proto.Marshal(v)
	}
	return nil, fmt.Errorf("grpcweb: marshal %T", v)
}

func (rawCodec) Unmarshal(b []byte, v any) error {
	switch v := v.(type) {
	case *raw:
		v.b = append(v.b[:0], b...)
		return nil
	case proto.Message:
		return proto.Unmarshal(b, v)
	}
	return fmt.Errorf("grpcweb: unmarshal into %T", v)
}

func (c *Conn) client(method string) *connect.Client[raw, raw] {
	return connect.NewClient[raw, raw](c.http, c.base+method, c.options...)
}

// headers copies the outgoing gRPC metadata of ctx (the authorization token) into h.
func headers(ctx context.Context, h http.Header) {
	md, _ := metadata.FromOutgoingContext(ctx)
	for k, vs := range md {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
}

// Invoke makes a unary call.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	in, err := proto.Marshal(args.(proto.Message))
	if err != nil {
		return status.Errorf(codes.Internal, "grpcweb: encode request: %v", err)
	}
	req := connect.NewRequest(&raw{in})
	headers(ctx, req.Header())
	resp, err := c.client(method).CallUnary(ctx, req)
	if err != nil {
		return toStatus(err)
	}
	if err := proto.Unmarshal(resp.Msg.b, reply.(proto.Message)); err != nil {
		return status.Errorf(codes.Internal, "grpcweb: decode response: %v", err)
	}
	return nil
}

// StreamsRequests reports false: a browser cannot stream a request body, so a Conn carries
// no client-streaming or bidirectional call. The client library (libs/client's
// RequestStreamer) reads it to use the calls' browser forms instead.
func (*Conn) StreamsRequests() bool { return false }

// NewStream opens a server-streaming call; the call starts once the request is sent.
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	if desc.ClientStreams {
		return nil, status.Errorf(codes.Unimplemented, "grpcweb: %s streams requests, which a browser cannot", method)
	}
	return &serverStream{ctx: ctx, client: c.client(method)}, nil
}

// serverStream is one server-streaming call.
type serverStream struct {
	ctx     context.Context
	client  *connect.Client[raw, raw]
	request []byte
	stream  *connect.ServerStreamForClient[raw]
	err     error
}

func (s *serverStream) SendMsg(m any) error {
	if s.request != nil || s.stream != nil {
		return status.Error(codes.Internal, "grpcweb: a server-streaming call has one request")
	}
	b, err := proto.Marshal(m.(proto.Message))
	if err != nil {
		return status.Errorf(codes.Internal, "grpcweb: encode request: %v", err)
	}
	s.request = b
	return nil
}

func (s *serverStream) CloseSend() error {
	if s.stream != nil {
		return nil
	}
	req := connect.NewRequest(&raw{s.request})
	headers(s.ctx, req.Header())
	s.stream, s.err = s.client.CallServerStream(s.ctx, req)
	return nil
}

func (s *serverStream) RecvMsg(m any) error {
	if s.stream == nil && s.err == nil {
		s.CloseSend()
	}
	if s.err != nil {
		return toStatus(s.err)
	}
	if !s.stream.Receive() {
		if err := s.stream.Err(); err != nil {
			return toStatus(err)
		}
		return io.EOF // as a gRPC stream's Recv at the end
	}
	if err := proto.Unmarshal(s.stream.Msg().b, m.(proto.Message)); err != nil {
		return status.Errorf(codes.Internal, "grpcweb: decode response: %v", err)
	}
	return nil
}

func (s *serverStream) Header() (metadata.MD, error) {
	if s.stream == nil {
		return nil, nil
	}
	return metadata.MD(lower(s.stream.ResponseHeader())), nil
}

func (s *serverStream) Trailer() metadata.MD {
	if s.stream == nil {
		return nil
	}
	return metadata.MD(lower(s.stream.ResponseTrailer()))
}

func (s *serverStream) Context() context.Context { return s.ctx }

func lower(h http.Header) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = v
	}
	return out
}

// toStatus turns a connect error into the gRPC status error the server sent, details
// included.
func toStatus(err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return status.Error(codes.Unknown, err.Error())
	}
	sp := &spb.Status{Code: int32(ce.Code()), Message: ce.Message()}
	for _, d := range ce.Details() {
		sp.Details = append(sp.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
	}
	return status.FromProto(sp).Err()
}
