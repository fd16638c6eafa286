package notification

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// h1Client sends HTTP/1.1 requests over pooled TLS connections, one request at a time per
// connection, entirely in the calling goroutine. Web Push uses it.
//
// Why not net/http's Transport: it runs a reader and a writer goroutine per connection
// and hands every request, its written signal, the response and the body's end between
// them and the caller over channels. For a push of a few hundred bytes that machinery
// cost about 60 µs of CPU per push, more than half of what the sender spent above the
// RFC 8291 cryptography (docs/perf-presence.md). The caller hands over the whole request,
// built once (WebPush keeps its header lines with the origin's JWT), and responses are
// read by net/http's ReadResponse; what this adds is only the connection pool, with the
// Transport's guarantees kept: the SSRF-guarded dialer, a deadline on every exchange,
// no redirects followed, bounded response reads, idle connections bounded and expired,
// and a request on a pooled connection the server had closed sent again on a new one.
// Idle connections are swept as pushes come and go, not by a timer: a sender that stops
// pushing keeps its last few open until the push service closes them.
type h1Client struct {
	dialer  *net.Dialer
	tls     *tls.Config // cloned per connection, with ServerName and ALPN set
	timeout time.Duration
	now     func() time.Time

	mu        sync.Mutex
	idle      map[string][]*h1Conn // by host:port, most recently used last
	nidle     int
	lastSweep time.Time
}

const (
	h1IdleTimeout      = 90 * time.Second
	h1MaxIdlePerHost   = 256
	h1MaxIdle          = 1024 // over all hosts: registrations name many push services
	h1HandshakeTimeout = 10 * time.Second
	// h1MaxBody is the most of a response body read before the connection is given up
	// rather than drained: a push service answers with a few bytes at most.
	h1MaxBody = 4096
)

// errNoAnswer marks a request that got no byte of an answer on a pooled connection: the
// server had closed it while idle, so the request is sent again on a new one.
var errNoAnswer = errors.New("connection closed before an answer")

// aLongTimeAgo is a deadline in the past, to interrupt an exchange at once.
var aLongTimeAgo = time.Unix(1, 0)

func newH1Client(o HTTPOptions) *h1Client {
	cfg := o.TLS
	if cfg == nil {
		cfg = &tls.Config{}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	return &h1Client{dialer: newDialer(o.AllowPrivate), tls: cfg, timeout: timeout, now: time.Now, idle: map[string][]*h1Conn{}}
}

// h1Conn is one pooled connection; its reader counts the bytes read so that a failure
// before any answer can be told apart.
type h1Conn struct {
	tc        net.Conn // a *tls.Conn
	br        *bufio.Reader
	read      int64
	idleSince time.Time
}

func (c *h1Conn) Read(p []byte) (int, error) {
	n, err := c.tc.Read(p)
	c.read += int64(n)
	return n, err
}

// do sends msg, a whole HTTP/1.1 POST (head and body), to addr, an https host:port whose
// certificate names host, and returns the response's status. A response's body is read up
// to h1MaxBody and discarded.
//
// The exchange's bound is a deadline on the connection, not a context with a timer: the
// caller's context still interrupts it (context.AfterFunc), at no cost when it has no
// Done channel.
func (c *h1Client) do(ctx context.Context, addr, host string, msg []byte) (int, error) {
	deadline := c.now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		conn, reused, err := c.get(ctx, addr, host, deadline)
		if err != nil {
			return 0, err
		}
		status, keep, err := c.exchange(ctx, conn, msg, deadline)
		if err == nil {
			if keep {
				c.put(addr, conn)
			} else {
				conn.tc.Close()
			}
			return status, nil
		}
		conn.tc.Close()
		// A push is a content-free wake-up with a Topic: sending it again on a new
		// connection is harmless even if the first one did arrive. Each failed pooled
		// connection is closed, so this ends.
		if !reused || !errors.Is(err, errNoAnswer) || ctx.Err() != nil || !c.now().Before(deadline) {
			return 0, err
		}
	}
}

// exchange writes msg on conn and reads the answer by deadline, or until ctx ends; keep
// says whether conn can be reused.
func (c *h1Client) exchange(ctx context.Context, conn *h1Conn, msg []byte, deadline time.Time) (status int, keep bool, err error) {
	if err := conn.tc.SetDeadline(deadline); err != nil {
		return 0, false, err
	}
	if ctx.Done() == nil {
		return exchange(conn, msg)
	}
	stop := context.AfterFunc(ctx, func() { conn.tc.SetDeadline(aLongTimeAgo) })
	status, keep, err = exchange(conn, msg)
	if !stop() {
		// The deadline is being moved to the past: the connection is not reusable.
		keep = false
	}
	return status, keep, err
}

// postRequest tells http.ReadResponse what the answer answers: a POST (not a HEAD, so a
// body is read by its framing).
var postRequest = &http.Request{Method: http.MethodPost}

func exchange(conn *h1Conn, msg []byte) (status int, keep bool, err error) {
	read := conn.read
	if _, err := conn.tc.Write(msg); err != nil {
		return 0, false, fmt.Errorf("write request: %w (%w)", err, errNoAnswer)
	}
	resp, err := http.ReadResponse(conn.br, postRequest)
	if err != nil {
		if conn.read == read {
			return 0, false, fmt.Errorf("read response: %w (%w)", err, errNoAnswer)
		}
		return 0, false, fmt.Errorf("read response: %w", err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, h1MaxBody+1))
	resp.Body.Close()
	if resp.StatusCode < 200 {
		// An interim answer a push service has no reason to send (we send no Expect);
		// the final one would follow on this connection, which is given up instead.
		return 0, false, fmt.Errorf("unexpected HTTP %d", resp.StatusCode)
	}
	keep = err == nil && n <= h1MaxBody && !resp.Close && (resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0)
	return resp.StatusCode, keep, nil
}

// get takes an idle connection to addr or dials one; reused says which.
func (c *h1Client) get(ctx context.Context, addr, host string, deadline time.Time) (conn *h1Conn, reused bool, err error) {
	now := c.now()
	var stale []*h1Conn
	c.mu.Lock()
	for l := c.idle[addr]; len(l) > 0; l = c.idle[addr] {
		conn = l[len(l)-1]
		l[len(l)-1] = nil
		if len(l) == 1 {
			delete(c.idle, addr)
		} else {
			c.idle[addr] = l[:len(l)-1]
		}
		c.nidle--
		if now.Sub(conn.idleSince) < h1IdleTimeout {
			break
		}
		stale, conn = append(stale, conn), nil
	}
	c.mu.Unlock()
	closeAll(stale)
	if conn != nil {
		return conn, true, nil
	}
	conn, err = c.dial(ctx, addr, host, deadline)
	return conn, false, err
}

func (c *h1Client) dial(ctx context.Context, addr, host string, deadline time.Time) (*h1Conn, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	raw, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := c.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, h1HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return newH1Conn(tc), nil
}

func newH1Conn(c net.Conn) *h1Conn {
	conn := &h1Conn{tc: c}
	conn.br = bufio.NewReaderSize(conn, 4096)
	return conn
}

// put returns a connection to the pool, unless the pool is full; now and then it closes
// connections that have been idle too long, on every host.
func (c *h1Client) put(addr string, conn *h1Conn) {
	now := c.now()
	conn.idleSince = now
	var drop []*h1Conn
	c.mu.Lock()
	if now.Sub(c.lastSweep) > h1IdleTimeout/3 {
		c.lastSweep = now
		for a, l := range c.idle {
			i := 0
			for i < len(l) && now.Sub(l[i].idleSince) >= h1IdleTimeout {
				i++
			}
			drop = append(drop, l[:i]...)
			c.nidle -= i
			if i == len(l) {
				delete(c.idle, a)
			} else if i > 0 {
				c.idle[a] = append(l[:0:0], l[i:]...)
			}
		}
	}
	if l := c.idle[addr]; len(l) < h1MaxIdlePerHost && c.nidle < h1MaxIdle {
		c.idle[addr] = append(l, conn)
		c.nidle++
	} else {
		drop = append(drop, conn)
	}
	c.mu.Unlock()
	closeAll(drop)
}

func closeAll(conns []*h1Conn) {
	for _, c := range conns {
		c.tc.SetDeadline(aLongTimeAgo) // a close_notify must not block on a stuck peer
		c.tc.Close()
	}
}
