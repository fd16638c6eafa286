package client_test

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/guardyn/guardyn/libs/client"
)

// TestDialOptionsSendNoPingPerMessage streams messages from a real gRPC server over
// loopback to a connection dialled with client.DialOptions and reads the HTTP/2 frames the
// client sent: none may be a PING, which a default grpc-go client sends on the first data
// that arrives and again after every answered PING, each costing the server a write.
func TestDialOptionsSendNoPingPerMessage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []grpc.DialOption
		wantPings bool
	}{
		{"default grpc-go client (control)", nil, true},
		{"client.DialOptions", client.DialOptions(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pings := clientPings(t, tc.opts, 20)
			t.Logf("%d PINGs from the client for 20 messages", pings)
			if tc.wantPings && pings == 0 {
				t.Fatalf("the default client sent no PING: the test does not see what it checks")
			}
			if !tc.wantPings && pings != 0 {
				t.Fatalf("the client sent %d PINGs for 20 messages; want none", pings)
			}
		})
	}
}

// clientPings receives n messages on a server stream over a connection dialled with opts
// and returns the PING frames (not acknowledgements) the client sent the server.
func clientPings(t *testing.T, opts []grpc.DialOption, n int) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingListener{Listener: lis}
	hs := health.NewServer()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(rec)
	defer srv.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil { // SERVICE_UNKNOWN
		t.Fatal(err)
	}
	status := []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING}
	for i := range n {
		// One message at a time, as a device gets them: each arrives on an idle connection.
		time.Sleep(2 * time.Millisecond)
		hs.SetServingStatus("s", status[i%2])
		if _, err := watch.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	conn.Close()
	srv.Stop()
	return rec.pings(t)
}

// recordingListener keeps every byte its connections read: what the client sent.
type recordingListener struct {
	net.Listener
	mu  sync.Mutex
	in  []byte
	got bool
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got {
		c.Close() // one connection is expected
		return nil, net.ErrClosed
	}
	l.got = true
	return &recordingConn{Conn: c, l: l}, nil
}

type recordingConn struct {
	net.Conn
	l *recordingListener
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.mu.Lock()
	c.l.in = append(c.l.in, p[:n]...)
	c.l.mu.Unlock()
	return n, err
}

// pings parses the client's bytes as HTTP/2 (RFC 9113 §3.4, §4.1) and counts PING frames
// without the ACK flag.
func (l *recordingListener) pings(t *testing.T) int {
	t.Helper()
	l.mu.Lock()
	b := l.in
	l.mu.Unlock()
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	if len(b) < len(preface) || string(b[:len(preface)]) != preface {
		t.Fatalf("the client's bytes do not start with the HTTP/2 preface")
	}
	b = b[len(preface):]
	const frameHeader, typePing, flagAck = 9, 0x6, 0x1
	pings, frames := 0, 0
	for len(b) >= frameHeader {
		length := int(binary.BigEndian.Uint32(append([]byte{0}, b[:3]...)))
		if len(b) < frameHeader+length {
			break // cut off when the connection closed
		}
		if b[3] == typePing && b[4]&flagAck == 0 {
			pings++
		}
		frames++
		b = b[frameHeader+length:]
	}
	if frames == 0 {
		t.Fatalf("no HTTP/2 frames from the client")
	}
	return pings
}
