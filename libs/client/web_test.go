package client_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/grpcweb"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// The client over gRPC-Web, as the browser app runs it: the transport carries no request
// streams, so Listen subscribes and acknowledges by AckMessages, and SendFile uploads one
// chunk per call. Each test is a native scenario of this package run over the web port of
// a real platform.

// webConn is a gRPC-Web transport that can lose answers: the call is carried out, then
// reported failed, as when a connection drops after the server answered. Embedding keeps
// grpcweb.Conn's StreamsRequests.
type webConn struct {
	*grpcweb.Conn
	mu    sync.Mutex
	calls map[string]int
	lose  map[string]int // method -> the number of the call (1-based) whose answer is lost
}

func newWebConn(t *testing.T, p *clienttest.Platform, name string) (client.Config, *webConn) {
	cfg := p.WebConfig(t, name, nil)
	w := &webConn{Conn: cfg.Conn.(*grpcweb.Conn), calls: map[string]int{}, lose: map[string]int{}}
	cfg.Conn = w
	return cfg, w
}

func (w *webConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	w.mu.Lock()
	w.calls[method]++
	lost := w.lose[method] == w.calls[method]
	w.mu.Unlock()
	err := w.Conn.Invoke(ctx, method, args, reply, opts...)
	if lost && err == nil {
		return status.Error(codes.Unavailable, "answer lost (injected)")
	}
	return err
}

func (w *webConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	w.mu.Lock()
	w.calls[method]++
	w.mu.Unlock()
	return w.Conn.NewStream(ctx, desc, method, opts...)
}

func (w *webConn) count(method string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[method]
}

const (
	subscribeMethod    = "/guardyn.messaging.v1.MessagingService/Subscribe"
	uploadChunkMethod  = "/guardyn.media.v1.MediaService/UploadChunk"
	uploadStatusMethod = "/guardyn.media.v1.MediaService/GetUploadStatus"
)

func registerWeb(t *testing.T, p *clienttest.Platform, cfg client.Config, name string) *client.Client {
	t.Helper()
	c, err := client.Register(clienttest.Context(t), cfg, name, name+"'s browser")
	if err != nil {
		t.Fatalf("register %s over the web: %v", name, err)
	}
	t.Cleanup(c.Close)
	return c
}

// listener runs Listen in the background and hands its events over a channel.
type listener struct {
	events chan client.Event
	done   chan struct{} // closed when Listen returned err
	err    error
	stop   func()
}

func listen(t *testing.T, c *client.Client) *listener {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{events: make(chan client.Event, 100), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.err = c.Listen(ctx, false, func(ev client.Event) { l.events <- ev })
	}()
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			cancel()
			<-l.done
			if l.err != nil {
				t.Errorf("listen: %v", l.err)
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

// next returns the next event of one of kinds, skipping others.
func (l *listener) next(t *testing.T, kinds ...client.EventKind) client.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-l.events:
			for _, k := range kinds {
				if ev.Kind == k {
					return ev
				}
			}
		case <-l.done:
			t.Fatalf("listen ended: %v", l.err)
		case <-deadline:
			t.Fatalf("no event of kinds %v within 30s", kinds)
		}
	}
}

// TestWebListenBacklogLiveReceipts: a browser device receives its backlog in order, then
// live messages, over Subscribe; it acknowledges what it saved (nothing comes again on the
// next stream) and answers with receipts; it sends as any device.
func TestWebListenBacklogLiveReceipts(t *testing.T) {
	p := clienttest.StartWeb(t)
	ctx := clienttest.Context(t)
	alice := p.Register(t, "alice")
	cfg, conn := newWebConn(t, p, "bob")
	bob := registerWeb(t, p, cfg, "bob")
	var sent []string
	for _, body := range []string{"offline 1", "offline 2", "offline 3"} {
		if _, err := alice.Send(ctx, "bob", body); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, body)
	}
	l := listen(t, bob)
	for _, want := range sent {
		if ev := l.next(t, client.EventMessage); ev.Body != want || ev.From != "alice" {
			t.Fatalf("backlog: %+v, want %q from alice", ev, want)
		}
	}
	l.next(t, client.EventBacklogDone)
	if _, err := alice.Send(ctx, "bob", "live"); err != nil {
		t.Fatal(err)
	}
	if ev := l.next(t, client.EventMessage); ev.Body != "live" {
		t.Fatalf("live: %+v", ev)
	}
	if _, err := bob.Send(ctx, "alice", "reply from a browser"); err != nil {
		t.Fatal(err)
	}
	// The receipt of the live message leaves after it was shown: wait for it.
	var receipts int
	var replies []string
	for deadline := time.Now().Add(30 * time.Second); receipts < 4 && time.Now().Before(deadline); {
		for _, ev := range clienttest.Drain(t, alice) {
			switch ev.Kind {
			case client.EventReceipt:
				receipts++
			case client.EventMessage:
				replies = append(replies, ev.Body)
			}
		}
		if receipts < 4 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if receipts != 4 || len(replies) != 1 || replies[0] != "reply from a browser" {
		t.Fatalf("alice got %d receipts and messages %q; want 4 receipts and the reply", receipts, replies)
	}
	if conn.count(subscribeMethod) == 0 || conn.count(ackMethod) == 0 {
		t.Fatalf("%d Subscribe and %d AckMessages calls: the browser forms were not used", conn.count(subscribeMethod), conn.count(ackMethod))
	}
	// Alice's device answers the reply with its receipt: let it arrive on this stream, so
	// that nothing is in flight when it stops.
	if ev := l.next(t, client.EventReceipt); ev.From != "alice" {
		t.Fatalf("receipt of the reply: %+v", ev)
	}
	// Everything was acknowledged: a new stream (a reload of the page) brings nothing back.
	l.stop()
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("after acknowledging, the next stream brought %+v", evs)
	}
}

// TestWebAckLostRedeliveryDropped: over the web too, a message is acknowledged only after
// it was saved, and one whose acknowledgement was lost comes again and is dropped as a
// duplicate.
func TestWebAckLostRedeliveryDropped(t *testing.T) {
	p := clienttest.StartWeb(t)
	ctx := clienttest.Context(t)
	alice := p.Register(t, "alice")
	cfg, conn := newWebConn(t, p, "bob")
	bob := registerWeb(t, p, cfg, "bob")
	if _, err := alice.Send(ctx, "bob", "exactly once on screen"); err != nil {
		t.Fatal(err)
	}
	conn.mu.Lock()
	conn.lose[ackMethod] = conn.calls[ackMethod] + 1
	conn.mu.Unlock()
	var shown []string
	err := bob.Listen(ctx, true, func(ev client.Event) {
		if ev.Kind == client.EventMessage {
			shown = append(shown, ev.Body)
		}
	})
	if status.Code(err) != codes.Unavailable || len(shown) != 1 {
		t.Fatalf("first listen: err = %v, shown %q; want the message shown and the lost ack reported", err, shown)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("redelivery produced events %+v; it should be dropped as a duplicate", evs)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("third listen got %+v; the duplicate should have been acknowledged", evs)
	}
	if hist, err := bob.History("alice"); err != nil || len(hist) != 1 {
		t.Fatalf("history holds %d entries (%v), want 1", len(hist), err)
	}
}

// cuttable is an HTTP transport whose connections can all be cut at once, and new ones
// refused for a while: the network going away under a browser.
type cuttable struct {
	mu    sync.Mutex
	conns []net.Conn
	down  bool
	dials atomic.Int64
}

func (c *cuttable) client() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.mu.Lock()
		down := c.down
		c.mu.Unlock()
		if down {
			return nil, errors.New("network down (injected)")
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.dials.Add(1)
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
		return conn, nil
	}}}
}

// cut closes every connection and refuses new ones until up.
func (c *cuttable) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

func (c *cuttable) up() {
	c.mu.Lock()
	c.down = false
	c.mu.Unlock()
}

// TestWebListenReconnects: the network goes away under a listening browser; Listen says
// so, retries with backoff, and when the network is back it says so and receives what was
// sent meanwhile: nothing is lost.
func TestWebListenReconnects(t *testing.T) {
	p := clienttest.StartWeb(t)
	ctx := clienttest.Context(t)
	alice := p.Register(t, "alice")
	net := &cuttable{}
	cfg := p.WebConfig(t, "bob", net.client())
	bob := registerWeb(t, p, cfg, "bob")
	l := listen(t, bob)
	l.next(t, client.EventBacklogDone)
	if _, err := alice.Send(ctx, "bob", "before"); err != nil {
		t.Fatal(err)
	}
	if ev := l.next(t, client.EventMessage); ev.Body != "before" {
		t.Fatalf("before the cut: %+v", ev)
	}
	net.cut()
	ev := l.next(t, client.EventDisconnected)
	if status.Code(ev.Err) != codes.Unavailable {
		t.Errorf("disconnected because of %v, want an UNAVAILABLE error", ev.Err)
	}
	if _, err := alice.Send(ctx, "bob", "while away"); err != nil {
		t.Fatal(err)
	}
	// Let a few reconnection attempts fail.
	time.Sleep(2 * time.Second)
	dialsBefore := net.dials.Load()
	net.up()
	l.next(t, client.EventReconnected)
	if ev := l.next(t, client.EventMessage); ev.Body != "while away" {
		t.Fatalf("after reconnecting: %+v", ev)
	}
	if _, err := alice.Send(ctx, "bob", "after"); err != nil {
		t.Fatal(err)
	}
	if ev := l.next(t, client.EventMessage); ev.Body != "after" {
		t.Fatalf("live after reconnecting: %+v", ev)
	}
	if net.dials.Load() == dialsBefore {
		t.Fatal("no new connection after the network came back")
	}
}

// chunks is the number of chunks of a ciphertext of size bytes.
func chunks(size int64) int { return int((size + client.UploadChunk - 1) / client.UploadChunk) }

// TestWebSendFileBothWays: a browser device sends a file to a native one and receives one
// from it, each fetched, checked and decrypted; the upload went one chunk per call.
func TestWebSendFileBothWays(t *testing.T) {
	p := clienttest.StartWeb(t)
	ctx := clienttest.Context(t)
	bob := p.Register(t, "bob")
	cfg, conn := newWebConn(t, p, "alice")
	alice := registerWeb(t, p, cfg, "alice")
	dir := t.TempDir()
	up := randomFile(t, dir, "from-browser.bin", 3<<20+777)
	sent, err := alice.SendFile(ctx, "bob", filepath.Join(dir, "from-browser.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if n, want := conn.count(uploadChunkMethod), chunks(sent.File.Size); n != want {
		t.Fatalf("%d UploadChunk calls for %d chunks", n, want)
	}
	ev := fileEvent(t, clienttest.Drain(t, bob))
	if ev.ID != sent.ID {
		t.Fatalf("bob got %+v", ev)
	}
	entry, err := bob.FindFile(ev.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	path, err := bob.GetFile(ctx, entry, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, up) {
		t.Fatal("the file bob fetched differs from the one the browser sent")
	}

	down := randomFile(t, dir, "to-browser.bin", 2<<20+5)
	if _, err := bob.SendFile(ctx, "alice", filepath.Join(dir, "to-browser.bin")); err != nil {
		t.Fatal(err)
	}
	ev = fileEvent(t, clienttest.Drain(t, alice))
	entry, err = alice.FindFile(ev.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	path, err = alice.GetFile(ctx, entry, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, down) {
		t.Fatal("the file the browser fetched differs from the one bob sent")
	}
}

// TestWebSendFileResumes: a chunk whose answer was lost is not sent twice: the upload asks
// the server where it stands and goes on; and an upload killed midway resumes on the next
// SendFile from the committed offset.
func TestWebSendFileResumes(t *testing.T) {
	p := clienttest.StartWeb(t)
	ctx := clienttest.Context(t)
	bob := p.Register(t, "bob")
	cfg, conn := newWebConn(t, p, "alice")
	alice := registerWeb(t, p, cfg, "alice")
	dir := t.TempDir()
	body := randomFile(t, dir, "big.bin", 6<<20)
	conn.mu.Lock()
	conn.lose[uploadChunkMethod] = 2 // the second chunk is stored, its answer lost
	conn.mu.Unlock()
	alice.KillUploadForTest(func(id string, sent int64) error {
		if sent >= 4<<20 {
			return errKilled
		}
		return nil
	})
	if _, err := alice.SendFile(ctx, "bob", filepath.Join(dir, "big.bin")); !errors.Is(err, errKilled) {
		t.Fatalf("killed send: err = %v", err)
	}
	// The first chunk, the second (answer lost), then the third and fourth: the lost
	// answer cost one status call and no chunk again.
	if n, s := conn.count(uploadChunkMethod), conn.count(uploadStatusMethod); n != 4 || s != 2 {
		t.Fatalf("%d UploadChunk and %d GetUploadStatus calls; want 4 and 2 (one at the start, one after the lost answer)", n, s)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("bob got %+v from a killed send", evs)
	}
	alice.KillUploadForTest(nil)
	sent, err := alice.SendFile(ctx, "bob", filepath.Join(dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if sent.ResumedAt != 4<<20 {
		t.Fatalf("resumed at %d, want %d", sent.ResumedAt, 4<<20)
	}
	if n, want := conn.count(uploadChunkMethod), chunks(sent.File.Size); n != want {
		t.Fatalf("%d UploadChunk calls in all for %d chunks", n, want)
	}
	ev := fileEvent(t, clienttest.Drain(t, bob))
	entry, err := bob.FindFile(ev.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	path, err := bob.GetFile(ctx, entry, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
		t.Fatal("resumed file differs")
	}
}
