package main

import (
	"flag"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// connPool hands simulated devices their client connections: each device its own
// (shared == 0), as phones connect straight to the server, or all devices spread over
// a fixed number of connections, as an edge proxy multiplexes its clients' streams over
// pooled HTTP/2 connections to the server.
type connPool struct {
	addr   string
	shared int

	mu    sync.Mutex
	conns []*grpc.ClientConn
	next  int
}

func registerConns(fs *flag.FlagSet, shared *int) {
	fs.IntVar(shared, "conns", 0, "spread the devices over this many shared connections, as an edge proxy does (0: one connection per device, as phones connect directly)")
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
	c, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	p.conns = append(p.conns, c)
	p.next++
	return c, nil
}

// describe says how devices reach the server, for the report.
func (p *connPool) describe() string {
	if p.shared == 0 {
		return "one connection per device"
	}
	return fmt.Sprintf("devices multiplexed over %d shared connections", p.shared)
}

func (p *connPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
