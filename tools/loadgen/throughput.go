package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

type throughputFlags struct {
	server   serverFlags
	senders  int
	inflight int
	conns    int
	probe    bool // -bdp-probe
	size     int
	warmup   time.Duration
	duration time.Duration
	// backendPIDs are processes of the stores and bus the server uses (a Cassandra, NATS
	// servers), whose CPU over the measured time is reported beside the server's.
	backendPIDs string
}

func runThroughput(ctx context.Context, args []string) error {
	var f throughputFlags
	fs := flag.NewFlagSet("throughput", flag.ContinueOnError)
	f.server.register(fs)
	fs.IntVar(&f.senders, "senders", 64, "sending devices, each paired with its own receiving device")
	fs.IntVar(&f.inflight, "inflight", 4, "messages each sender keeps in flight end to end: a slot frees when the receiver has acked its message")
	registerConns(fs, &f.conns)
	registerProbe(fs, &f.probe)
	fs.IntVar(&f.size, "size", 256, "envelope size in bytes")
	fs.DurationVar(&f.warmup, "warmup", 3*time.Second, "load before measuring")
	fs.DurationVar(&f.duration, "duration", 15*time.Second, "measured time")
	fs.StringVar(&f.backendPIDs, "backend-pids", "", "comma-separated pids of the server's backends (Cassandra, NATS servers): their CPU per message is reported too")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var backends []int
	for _, s := range strings.FieldsFunc(f.backendPIDs, func(r rune) bool { return r == ',' }) {
		pid, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-backend-pids: %q is not a pid", s)
		}
		backends = append(backends, pid)
	}
	backendCPU := func() (time.Duration, error) {
		var sum time.Duration
		for _, pid := range backends {
			c, err := procCPU(pid)
			if err != nil {
				return 0, fmt.Errorf("backend pid %d: %w", pid, err)
			}
			sum += c
		}
		return sum, nil
	}
	if f.size < 16 {
		return fmt.Errorf("-size must be at least 16 bytes")
	}
	addr := f.server.addr
	var srv *child
	if addr == "" {
		var err error
		if srv, err = f.server.start(ctx); err != nil {
			return err
		}
		defer srv.stop()
		addr = srv.addr
	}

	conns := newConnPool(addr, f.conns)
	conns.probe = f.probe
	defer conns.Close()
	pairs, err := setupPairs(ctx, conns, f.senders)
	if err != nil {
		return err
	}

	var (
		measuring atomic.Bool
		acked     atomic.Int64
		latMu     sync.Mutex
		latencies []time.Duration
		sendLats  []time.Duration
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	stopSending := make(chan struct{})
	for _, p := range pairs {
		ready := make(chan struct{})
		g.Go(func() error {
			return receive(gctx, p, ready, func(lat []time.Duration, n int) {
				if !measuring.Load() {
					return
				}
				acked.Add(int64(n))
				latMu.Lock()
				latencies = append(latencies, lat...)
				latMu.Unlock()
			})
		})
		select {
		case <-ready:
		case <-gctx.Done():
			return g.Wait()
		}
		p.slots = make(chan struct{}, f.inflight)
		p.sendLatency = func(d time.Duration) {
			if measuring.Load() {
				latMu.Lock()
				sendLats = append(sendLats, d)
				latMu.Unlock()
			}
		}
		g.Go(func() error { return send(gctx, stopSending, p, f.size) })
	}

	fmt.Printf("loadgen: %d senders → %d receivers, %d messages in flight per pair (send → deliver → ack), %d-byte envelopes, %s, server %s\n", f.senders, f.senders, f.inflight, f.size, conns.describe(), addr)
	select {
	case <-time.After(f.warmup):
	case <-gctx.Done():
		return g.Wait()
	}
	var cpuStart time.Duration
	cpuErr := errors.New("no child")
	if srv != nil {
		cpuStart, cpuErr = srv.cpu()
	}
	stopProfile, err := srv.profiling(f.server)
	if err != nil {
		return err
	}
	backendStart, err := backendCPU()
	if err != nil {
		return err
	}
	selfStart := selfCPU()
	measuring.Store(true)
	start := time.Now()
	select {
	case <-time.After(f.duration):
	case <-gctx.Done():
		return g.Wait()
	}
	measuring.Store(false)
	selfUsed := selfCPU() - selfStart
	backendEnd, backendErr := backendCPU()
	elapsed := time.Since(start)
	stopProfile()
	// Stop sending, let the receivers take and acknowledge what is in flight, then check
	// that their inboxes are empty: acknowledgements really deleted what they counted.
	close(stopSending)
	inFlight := func() (n int) {
		for _, p := range pairs {
			n += len(p.slots)
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); inFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	unacked := inFlight()
	time.Sleep(500 * time.Millisecond) // for the last acknowledgements to reach the server
	cancel()
	if err := g.Wait(); err != nil && ctx.Err() == nil && runCtx.Err() == nil {
		return err
	}
	left, err := leftInInboxes(ctx, pairs)
	if err != nil {
		return err
	}

	latMu.Lock()
	defer latMu.Unlock()
	slices.Sort(latencies)
	slices.Sort(sendLats)
	pctOf := func(l []time.Duration, p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		return l[min(len(l)-1, int(p*float64(len(l))))].Round(10 * time.Microsecond)
	}
	pct := func(p float64) time.Duration { return pctOf(latencies, p) }
	fmt.Printf("delivered and acked: %d messages in %.1fs = %.0f msg/s\n", acked.Load(), elapsed.Seconds(), float64(acked.Load())/elapsed.Seconds())
	fmt.Printf("end-to-end latency (send → arrival): p50 %v, p99 %v, max %v\n", pct(0.50), pct(0.99), pct(1))
	fmt.Printf("send acknowledged as stored: p50 %v, p99 %v\n", pctOf(sendLats, 0.5), pctOf(sendLats, 0.99))
	var dups int64
	for _, p := range pairs {
		dups += p.duplicates.Load()
	}
	fmt.Printf("duplicate deliveries (the client would drop them): %d\n", dups)
	fmt.Printf("after the run: %d messages sent but not acknowledged, %d left in the receivers' inboxes\n", unacked, left)
	if len(backends) > 0 && backendErr == nil && acked.Load() > 0 {
		used := backendEnd - backendStart
		fmt.Printf("backend CPU (%d processes): %.2f cores, %.0f µs per message\n", len(backends), used.Seconds()/elapsed.Seconds(), float64(used.Microseconds())/float64(acked.Load()))
	}
	if srv != nil && cpuErr == nil {
		if cpu, err := srv.cpu(); err == nil && acked.Load() > 0 {
			fmt.Printf("server CPU: %.2f cores, %.0f µs per message\n", (cpu-cpuStart).Seconds()/elapsed.Seconds(), float64((cpu-cpuStart).Microseconds())/float64(acked.Load()))
		}
	}
	// The simulated devices (and, with -trace, the collector) share the cores with the
	// server: on a machine that is busy otherwise, the sum of both CPU figures per message
	// is what bounds throughput, and steadier than msg/s (docs/observability.md).
	if acked.Load() > 0 {
		fmt.Printf("loadgen CPU: %.2f cores, %.0f µs per message\n", selfUsed.Seconds()/elapsed.Seconds(), float64(selfUsed.Microseconds())/float64(acked.Load()))
	}
	if srv != nil {
		if rss, err := srv.rss(); err == nil {
			fmt.Printf("server RSS: %.1f MiB\n", float64(rss)/(1<<20))
		}
		if n, ok := srv.spans(); ok {
			fmt.Printf("spans exported so far: %d (%.1f per acked message)\n", n, float64(n)/float64(max(acked.Load(), 1)))
		}
	}
	return nil
}

// pair is a sending device and the receiving device it writes to, each on its own
// connection like two phones.
type pair struct {
	sender, receiver *rawdevice.Device
	// slots holds one token per message in flight from sender to receiver; the
	// receiver frees them as its acks succeed, closing the loop end to end.
	slots chan struct{}
	// sendLatency records how long a send took to be acknowledged as stored.
	sendLatency func(time.Duration)
	conn        *grpc.ClientConn // the sender's
	rconn       *grpc.ClientConn // the receiver's

	seen       []uint64 // bit n: request n was delivered; the receiver's goroutine only
	duplicates atomic.Int64
}

// delivered records the delivery of request id and reports whether it came before.
func (p *pair) delivered(id uint64) bool {
	word, bit := id/64, uint64(1)<<(id%64)
	for uint64(len(p.seen)) <= word {
		p.seen = append(p.seen, 0)
	}
	dup := p.seen[word]&bit != 0
	p.seen[word] |= bit
	return dup
}

func setupPairs(ctx context.Context, conns *connPool, n int) ([]*pair, error) {
	run := time.Now().UnixNano()
	pairs := make([]*pair, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range pairs {
		g.Go(func() error {
			sc, err := conns.get()
			if err != nil {
				return err
			}
			rc, err := conns.get()
			if err != nil {
				return err
			}
			p := &pair{conn: sc, rconn: rc}
			pairs[i] = p
			if p.sender, err = rawdevice.Register(gctx, authv1.NewAuthServiceClient(sc), fmt.Sprintf("s%x_%d", run%1e9, i)); err != nil {
				return err
			}
			p.receiver, err = rawdevice.Register(gctx, authv1.NewAuthServiceClient(rc), fmt.Sprintf("r%x_%d", run%1e9, i))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("register devices: %w", err)
	}
	return pairs, nil
}

// send streams messages to the pair's receiver while it has free slots.
//
// When stop closes it ends its stream and waits for every send's answer, so that all it
// sent is stored.
func send(ctx context.Context, stop <-chan struct{}, p *pair, size int) error {
	c := messagingv1.NewMessagingServiceClient(p.conn)
	stream, err := c.SendStream(p.sender.Context(ctx))
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	var (
		startMu sync.Mutex
		started = make(map[uint64]time.Time)
	)
	go func() {
		for {
			resp, err := stream.Recv()
			if err == nil {
				startMu.Lock()
				t0, ok := started[resp.GetRequestId()]
				delete(started, resp.GetRequestId())
				startMu.Unlock()
				if ok {
					p.sendLatency(time.Since(t0))
				}
			}
			if err != nil {
				errc <- err
				return
			}
			if e := resp.GetError(); e != nil {
				errc <- fmt.Errorf("send failed: %s %s", e.GetReason(), e.GetMessage())
				return
			}
		}
	}()
	payload := make([]byte, size)
	for id := uint64(1); ; id++ {
		select {
		case p.slots <- struct{}{}:
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-ctx.Done():
			return nil
		case <-stop:
			if err := stream.CloseSend(); err != nil {
				return err
			}
			if err := <-errc; !errors.Is(err, io.EOF) && ctx.Err() == nil {
				return err
			}
			return nil
		}
		now := time.Now()
		startMu.Lock()
		started[id] = now
		startMu.Unlock()
		binary.BigEndian.PutUint64(payload, uint64(now.UnixNano()))
		binary.BigEndian.PutUint64(payload[8:], id)
		req := &messagingv1.SendStreamRequest{RequestId: id, Message: rawdevice.SendRequest(p.receiver.UserID, payload, p.receiver.ID)}
		if err := stream.Send(req); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// receive reads the receiver's stream, acknowledges each batch on the same stream and
// reports the latencies of acknowledged messages.
func receive(ctx context.Context, p *pair, ready chan<- struct{}, report func([]time.Duration, int)) error {
	c := messagingv1.NewMessagingServiceClient(p.rconn)
	stream, err := c.Receive(p.receiver.Context(ctx))
	if err != nil {
		return err
	}
	once := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if resp.GetBacklogComplete() && !once {
			once = true
			close(ready)
		}
		if len(resp.GetDeliveries()) == 0 {
			continue
		}
		now := time.Now().UnixNano()
		ids := make([][]byte, 0, len(resp.GetDeliveries()))
		lat := make([]time.Duration, 0, len(resp.GetDeliveries()))
		for _, d := range resp.GetDeliveries() {
			ids = append(ids, d.GetMessageId())
			if len(d.GetPayload()) >= 16 {
				lat = append(lat, time.Duration(now-int64(binary.BigEndian.Uint64(d.GetPayload()))))
				if p.delivered(binary.BigEndian.Uint64(d.GetPayload()[8:])) {
					p.duplicates.Add(1)
				}
			}
		}
		if err := stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: ids}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for range ids {
			<-p.slots
		}
		report(lat, len(ids))
	}
}

// leftInInboxes counts the messages still stored for the receivers, by reading each one's
// backlog on a new stream.
func leftInInboxes(ctx context.Context, pairs []*pair) (int, error) {
	left := 0
	for _, p := range pairs {
		sctx, cancel := context.WithTimeout(p.receiver.Context(ctx), 30*time.Second)
		stream, err := messagingv1.NewMessagingServiceClient(p.rconn).Receive(sctx)
		for err == nil {
			var resp *messagingv1.ReceiveResponse
			if resp, err = stream.Recv(); err == nil {
				left += len(resp.GetDeliveries())
				if resp.GetBacklogComplete() {
					break
				}
			}
		}
		cancel()
		if err != nil {
			return 0, fmt.Errorf("read the inbox of a receiver: %w", err)
		}
	}
	return left, nil
}
