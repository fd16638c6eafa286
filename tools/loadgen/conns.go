package main

import (
	"flag"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/libs/client"
)

// connPool hands simulated devices their client connections: each device its own
// (shared == 0), as phones connect straight to the server, or all devices spread over
// a fixed number of connections, as an edge proxy multiplexes its clients' streams over
// pooled HTTP/2 connections to the server.
type connPool struct {
	addr   string
	shared int
	// probe dials as a default grpc-go client, which PINGs the server whenever data
	// arrives to estimate the bandwidth; otherwise as Guardyn's apps, with
	// client.DialOptions.
	probe bool

	mu    sync.Mutex
	conns []*grpc.ClientConn
	next  int
}

func registerConns(fs *flag.FlagSet, shared *int) {
	fs.IntVar(shared, "conns", 0, "spread the devices over this many shared connections, as an edge proxy does (0: one connection per device, as phones connect directly)")
}

func registerProbe(fs *flag.FlagSet, probe *bool) {
	fs.BoolVar(probe, "bdp-probe", false, "dial as a default grpc-go client, which sends the server a PING whenever data arrives on an idle connection (bandwidth probing); by default devices dial as Guardyn's apps do (client.DialOptions: fixed windows, no probing)")
}

func newConnPool(addr string, shared int) *connPool {
	return &connPool{addr: addr, shared: shared}
}

// get returns the connection for the next device.
func (p *connPool) get() (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shared > 0 && len(p.conns) == p.shared {
		c := p.conns[p.next%p.shared]
		p.next++
		return c, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if !p.probe {
		opts = append(opts, client.DialOptions()...)
	}
	c, err := grpc.NewClient(p.addr, opts...)
	if err != nil {
		return nil, err
	}
	p.conns = append(p.conns, c)
	p.next++
	return c, nil
}

// describe says how devices reach the server, for the report.
func (p *connPool) describe() string {
	how := "one connection per device"
	if p.shared > 0 {
		how = fmt.Sprintf("devices multiplexed over %d shared connections", p.shared)
	}
	if p.probe {
		how += ", probing bandwidth (-bdp-probe)"
	}
	return how
}

func (p *connPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
