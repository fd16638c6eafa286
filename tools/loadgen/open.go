package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// openFlags configure the open-loop scenario.
type openFlags struct {
	server   serverFlags
	devices  int
	conns    int
	probe    bool      // -bdp-probe
	rates    []float64 // aggregate msg/s, one phase each: more than one is a sweep
	contacts int
	size     int
	warmup   time.Duration
	duration time.Duration
	// mix: the fraction of scheduled sends that go to a group the sender is in, and the
	// fraction of one-to-one messages their receiver answers with a receipt.
	groupShare   float64
	receiptShare float64
	groupSize    int
	svg          string // the latency-vs-rate curve of a sweep
}

func (f *openFlags) register(fs *flag.FlagSet) {
	f.server.register(fs)
	fs.IntVar(&f.devices, "devices", 10000, "connected devices, each with a Receive and a SendStream open")
	registerConns(fs, &f.conns)
	registerProbe(fs, &f.probe)
	fs.Func("rate", "aggregate scheduled sends per second, Poisson; a comma-separated list runs a sweep, one phase per rate (default 15000)", func(s string) error {
		f.rates = nil
		for _, part := range strings.Split(s, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
			if err != nil || r <= 0 {
				return fmt.Errorf("bad rate %q", part)
			}
			f.rates = append(f.rates, r)
		}
		return nil
	})
	fs.IntVar(&f.contacts, "contacts", 16, "contacts of each device, drawn at random; a one-to-one send goes to one of them")
	fs.IntVar(&f.size, "size", 256, "envelope size in bytes")
	fs.DurationVar(&f.warmup, "warmup", 3*time.Second, "load before measuring, in each phase")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "measured time of each phase")
	fs.Func("mix", `add other traffic: "group=F" sends a fraction F of the scheduled messages to a group of the sender's, "receipt=F" has receivers answer a fraction F of one-to-one messages with a receipt (e.g. group=0.1,receipt=0.5)`, func(s string) error {
		for _, part := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			x, err := strconv.ParseFloat(v, 64)
			if !ok || err != nil || x < 0 || x > 1 {
				return fmt.Errorf("bad mix %q: want name=fraction", part)
			}
			switch k {
			case "group":
				f.groupShare = x
			case "receipt":
				f.receiptShare = x
			default:
				return fmt.Errorf("unknown mix %q: group or receipt", k)
			}
		}
		return nil
	})
	fs.IntVar(&f.groupSize, "group-size", 8, "member devices of each group of the mix")
	fs.StringVar(&f.svg, "svg", "", "write the latency-vs-rate curve to this SVG file (default with a sweep: open-sweep.svg)")
}

func (f *openFlags) validate() error {
	if len(f.rates) == 0 {
		f.rates = []float64{15000}
	}
	switch {
	case f.devices < 2:
		return errors.New("-devices must be at least 2")
	case f.size < tagSize+16:
		return fmt.Errorf("-size must be at least %d bytes", tagSize+16)
	case f.contacts < 1:
		return errors.New("-contacts must be at least 1")
	case f.groupShare > 0 && (f.groupSize < 2 || f.groupSize > f.devices):
		return errors.New("-group-size must be between 2 and -devices")
	case f.server.profileDir != "" && f.server.addr != "":
		return errors.New("-profile needs a server started by loadgen")
	}
	if f.svg == "" && len(f.rates) > 1 {
		f.svg = "open-sweep.svg"
	}
	return nil
}

func parseOpenFlags(args []string) (openFlags, error) {
	var f openFlags
	fs := flag.NewFlagSet("open", flag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	return f, f.validate()
}

func runOpen(ctx context.Context, args []string) error {
	f, err := parseOpenFlags(args)
	if err != nil {
		return err
	}
	res, err := openLoop(ctx, f, os.Stdout)
	if err != nil {
		return err
	}
	if f.svg != "" {
		if err := os.WriteFile(f.svg, latencyCurveSVG(res.phases), 0o644); err != nil {
			return err
		}
		fmt.Printf("latency-vs-rate curve: %s\n", f.svg)
	}
	if res.lost > 0 {
		return fmt.Errorf("%d stored messages were never delivered", res.lost)
	}
	return nil
}

// Kinds of scheduled traffic, carried in each payload's tag.
const (
	kindDirect  = 1
	kindGroup   = 2
	kindReceipt = 3
)

// tagSize is the tail of every payload that identifies it: the time it was scheduled to
// be sent (ns), its sequence number, the sending device's index and its kind.
const tagSize = 21

func putTag(b []byte, sched time.Time, seq uint64, from int, kind byte) {
	t := b[len(b)-tagSize:]
	binary.BigEndian.PutUint64(t, uint64(sched.UnixNano()))
	binary.BigEndian.PutUint64(t[8:], seq)
	binary.BigEndian.PutUint32(t[16:], uint32(from))
	t[20] = kind
}

func readTag(b []byte) (sched int64, seq uint64, from int, kind byte, ok bool) {
	if len(b) < tagSize {
		return 0, 0, 0, 0, false
	}
	t := b[len(b)-tagSize:]
	return int64(binary.BigEndian.Uint64(t)), binary.BigEndian.Uint64(t[8:]), int(binary.BigEndian.Uint32(t[16:])), t[20], true
}

// openDevice is one simulated phone: a Receive stream and a SendStream, its contacts and
// what it received.
type openDevice struct {
	idx      int
	dev      *rawdevice.Device
	conn     *grpc.ClientConn
	contacts []int32
	groups   []int32 // indices into openRun.groups

	sendMu sync.Mutex // SendStream.Send is not safe for concurrent use
	send   grpc.BidiStreamingClient[messagingv1.SendStreamRequest, messagingv1.SendStreamResponse]

	seen map[uint64]struct{} // sequence numbers received; the receiving goroutine only
}

type openGroup struct {
	id      []byte
	members []int32
}

// sendState is what is known of one scheduled message.
type sendState struct {
	expected  atomic.Int32 // deliveries it should make: 1, or the group's size less one
	delivered atomic.Int32 // distinct devices it reached
	state     atomic.Int32 // stateSent, then stateStored or stateFailed
}

const (
	stateSent = iota + 1
	stateStored
	stateFailed
)

// sendLog holds a sendState per sequence number, in chunks allocated as they are needed,
// so that readers never take a lock.
type sendLog struct {
	mu     sync.Mutex
	chunks [1 << 14]atomic.Pointer[[1 << 14]sendState]
}

func (l *sendLog) at(seq uint64) *sendState {
	c := seq >> 14
	if c >= uint64(len(l.chunks)) {
		return nil
	}
	p := l.chunks[c].Load()
	if p == nil {
		l.mu.Lock()
		if p = l.chunks[c].Load(); p == nil {
			p = new([1 << 14]sendState)
			l.chunks[c].Store(p)
		}
		l.mu.Unlock()
	}
	return &p[seq&(1<<14-1)]
}

// histogram counts latencies in buckets 1 % wide, without locks.
type histogram struct {
	counts [2400]atomic.Int64
	n      atomic.Int64
}

const histBase = 1.01

func (h *histogram) add(d time.Duration) {
	us := max(float64(d)/float64(time.Microsecond), 1)
	i := min(int(math.Log(us)/math.Log(histBase)), len(h.counts)-1)
	h.counts[i].Add(1)
	h.n.Add(1)
}

// pct returns the upper bound of the bucket holding quantile p.
func (h *histogram) pct(p float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(p * float64(n)))
	var seen int64
	for i := range h.counts {
		if seen += h.counts[i].Load(); seen >= rank {
			return time.Duration(math.Pow(histBase, float64(i+1)) * float64(time.Microsecond)).Round(10 * time.Microsecond)
		}
	}
	return time.Duration(math.Pow(histBase, float64(len(h.counts))) * float64(time.Microsecond))
}

// phaseResult is one rate's measured figures.
type phaseResult struct {
	offered, achieved float64 // scheduled and delivered messages per second
	p50, p99, p999    time.Duration
	deliveries        int64 // deliveries measured (a group message counts once per device)
	cpuPerMsg         time.Duration
	serverCores       float64
	rss               int64
}

type openResult struct {
	phases     []phaseResult
	lost       int64 // stored and not delivered to every recipient by the end
	duplicates int64
	failed     int64 // sends answered with an error
	unanswered int64 // sends never answered
	// streamsEnded counts send streams the server ended (and loadgen reopened).
	streamsEnded int64
}

// openRun is the state of a run shared by its goroutines.
type openRun struct {
	f       openFlags
	devices []*openDevice
	groups  []openGroup
	log     sendLog
	seq     atomic.Uint64

	// phase is the histogram deliveries are measured into, nil between measurements.
	phase      atomic.Pointer[histogram]
	delivered  atomic.Int64 // deliveries while measuring
	duplicates atomic.Int64
	failed     atomic.Int64
	// streamsEnded counts SendStreams the server ended, each reopened.
	streamsEnded atomic.Int64
	firstErr     atomic.Pointer[string]
}

// openLoop runs the scenario: it registers and connects the devices, then for each rate
// schedules sends at that aggregate Poisson rate for warmup plus duration, measuring the
// latency of every delivery from the time its send was scheduled, so that a slow answer
// delays no later send and hides no queueing. At the end it waits for every stored
// message to arrive.
func openLoop(ctx context.Context, f openFlags, out io.Writer) (*openResult, error) {
	raiseFileLimit()
	addr := f.server.addr
	var srv *child
	if addr == "" {
		var err error
		if srv, err = f.server.start(ctx); err != nil {
			return nil, err
		}
		defer srv.stop()
		addr = srv.addr
	}
	conns := newConnPool(addr, f.conns)
	conns.probe = f.probe
	defer conns.Close()
	fmt.Fprintf(out, "loadgen: registering and connecting %d devices, %s, server %s…\n", f.devices, conns.describe(), addr)
	r := &openRun{f: f}
	if err := r.setup(ctx, conns); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	if err := r.connect(gctx, g); err != nil {
		cancel()
		g.Wait()
		return nil, err
	}
	fmt.Fprintf(out, "loadgen: %d devices connected, %d contacts each, %d-byte envelopes; mix: %.0f %% group messages (groups of %d), receipts for %.0f %% of one-to-one messages\n",
		f.devices, f.contacts, f.size, 100*f.groupShare, f.groupSize, 100*f.receiptShare)

	res := &openResult{}
	for i, rate := range f.rates {
		ph, err := r.runPhase(gctx, srv, rate, i == 0)
		if err != nil {
			cancel()
			g.Wait()
			return nil, err
		}
		res.phases = append(res.phases, ph)
		fmt.Fprintf(out, "rate %.0f msg/s: achieved %.0f deliveries/s; latency (scheduled send → arrival) p50 %v, p99 %v, p999 %v", ph.offered, ph.achieved, ph.p50, ph.p99, ph.p999)
		if ph.cpuPerMsg > 0 {
			fmt.Fprintf(out, "; server CPU %.2f cores, %.1f µs per delivery, RSS %.0f MiB", ph.serverCores, float64(ph.cpuPerMsg)/float64(time.Microsecond), mib(ph.rss))
		}
		fmt.Fprintln(out)
	}

	// Let everything stored arrive, then count what did not.
	deadline := time.Now().Add(20 * time.Second)
	for r.outstanding() > 0 && time.Now().Before(deadline) && gctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	res.lost, res.unanswered = r.missing()
	res.duplicates, res.failed, res.streamsEnded = r.duplicates.Load(), r.failed.Load(), r.streamsEnded.Load()
	cancel()
	if err := g.Wait(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	if srv != nil && f.server.profileDir != "" {
		srv.halt() // the allocation profile is written on exit
		fmt.Fprintf(out, "server profiles: %s/cpu.pprof (measured time of the first rate), %s/allocs.pprof\n", f.server.profileDir, f.server.profileDir)
	}
	fmt.Fprintf(out, "lost (stored, never delivered): %d; duplicate deliveries: %d; sends failed: %d; sends unanswered: %d; send streams ended by the server (reopened): %d\n", res.lost, res.duplicates, res.failed, res.unanswered, res.streamsEnded)
	if p := r.firstErr.Load(); p != nil {
		fmt.Fprintf(out, "first send error: %s\n", *p)
	}
	return res, nil
}

// setup registers the devices, draws their contacts and creates the mix's groups.
func (r *openRun) setup(ctx context.Context, conns *connPool) error {
	run := time.Now().UnixNano() % 1e9
	r.devices = make([]*openDevice, r.f.devices)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * runtime.NumCPU())
	for i := range r.devices {
		g.Go(func() error {
			c, err := conns.get()
			if err != nil {
				return err
			}
			d, err := rawdevice.Register(gctx, authv1.NewAuthServiceClient(c), fmt.Sprintf("o%x_%d", run, i))
			if err != nil {
				return err
			}
			r.devices[i] = &openDevice{idx: i, dev: d, conn: c, seen: make(map[uint64]struct{})}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("register devices: %w", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range r.devices {
		for range min(r.f.contacts, r.f.devices-1) {
			c := rng.IntN(r.f.devices - 1)
			if c >= d.idx {
				c++
			}
			d.contacts = append(d.contacts, int32(c))
		}
	}
	if r.f.groupShare == 0 {
		return nil
	}
	// Each device is in about one group.
	perm := rng.Perm(r.f.devices)
	for start := 0; start+r.f.groupSize <= len(perm); start += r.f.groupSize {
		grp := openGroup{id: rawdevice.NewMessageID()}
		for _, m := range perm[start : start+r.f.groupSize] {
			grp.members = append(grp.members, int32(m))
		}
		r.groups = append(r.groups, grp)
	}
	groupInfo := make([]byte, 256)
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(2 * runtime.NumCPU())
	for gi, grp := range r.groups {
		creator := r.devices[grp.members[0]]
		var members []*commonv1.DeviceAddress
		for _, m := range grp.members {
			members = append(members, &commonv1.DeviceAddress{UserId: r.devices[m].dev.UserID, DeviceId: r.devices[m].dev.ID})
			r.devices[m].groups = append(r.devices[m].groups, int32(gi))
		}
		g.Go(func() error {
			_, err := messagingv1.NewMessagingServiceClient(creator.conn).CreateGroup(creator.dev.Context(gctx), &messagingv1.CreateGroupRequest{GroupId: grp.id, Members: members, GroupInfo: groupInfo})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("create groups: %w", err)
	}
	return nil
}

// connect opens every device's Receive stream, waits for its (empty) backlog, and opens
// its SendStream.
func (r *openRun) connect(ctx context.Context, g *errgroup.Group) error {
	var opened errgroup.Group
	opened.SetLimit(64)
	for _, d := range r.devices {
		opened.Go(func() error {
			c := messagingv1.NewMessagingServiceClient(d.conn)
			rs, err := c.Receive(d.dev.Context(ctx))
			if err != nil {
				return err
			}
			for {
				resp, err := rs.Recv()
				if err != nil {
					return fmt.Errorf("receive: %w", err)
				}
				if resp.GetBacklogComplete() {
					break
				}
			}
			if d.send, err = c.SendStream(d.dev.Context(ctx)); err != nil {
				return err
			}
			g.Go(func() error { return r.receive(ctx, d, rs) })
			g.Go(func() error { return r.readAnswers(ctx, d) })
			return nil
		})
	}
	return opened.Wait()
}

// runPhase schedules sends at rate for warmup plus duration and measures the deliveries
// of the duration.
func (r *openRun) runPhase(ctx context.Context, srv *child, rate float64, profile bool) (phaseResult, error) {
	phaseCtx, stop := context.WithCancel(ctx)
	// Several schedulers, each a Poisson process: together one at the aggregate rate.
	const schedulers = 4
	var wg sync.WaitGroup
	for i := range schedulers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.schedule(phaseCtx, ctx, rate/schedulers, uint64(i))
		}()
	}
	defer func() { stop(); wg.Wait() }()
	if !sleepCtx(ctx, r.f.warmup) {
		return phaseResult{}, ctx.Err()
	}
	stopProfile := func() {}
	if profile {
		var err error
		if stopProfile, err = srv.profiling(r.f.server); err != nil {
			return phaseResult{}, err
		}
	}
	var cpu0 time.Duration
	if srv != nil {
		cpu0, _ = srv.cpu()
	}
	h := &histogram{}
	r.delivered.Store(0)
	r.phase.Store(h)
	start := time.Now()
	if !sleepCtx(ctx, r.f.duration) {
		return phaseResult{}, ctx.Err()
	}
	r.phase.Store(nil)
	elapsed := time.Since(start)
	stopProfile()
	n := r.delivered.Load()
	ph := phaseResult{offered: rate, achieved: float64(n) / elapsed.Seconds(), p50: h.pct(0.5), p99: h.pct(0.99), p999: h.pct(0.999), deliveries: n}
	if srv != nil {
		if cpu1, err := srv.cpu(); err == nil && n > 0 {
			ph.serverCores = (cpu1 - cpu0).Seconds() / elapsed.Seconds()
			ph.cpuPerMsg = (cpu1 - cpu0) / time.Duration(n)
		}
		ph.rss, _ = srv.rss()
	}
	return ph, nil
}

// schedule sends at a Poisson rate until ctx ends. A send's time is drawn in advance and
// carried in its payload; when the scheduler runs late it sends at once, and the delay
// counts in the latency. Sends outlive stop: they end with sendCtx, the run's.
func (r *openRun) schedule(stop, ctx context.Context, rate float64, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	next := time.Now()
	for stop.Err() == nil {
		next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		from := r.devices[rng.IntN(len(r.devices))]
		if r.f.groupShare > 0 && len(from.groups) > 0 && rng.Float64() < r.f.groupShare {
			go r.sendGroup(ctx, from, &r.groups[from.groups[rng.IntN(len(from.groups))]], next)
			continue
		}
		to := r.devices[from.contacts[rng.IntN(len(from.contacts))]]
		r.sendDirect(ctx, from, to, next, kindDirect, r.f.size)
	}
}

// sendDirect sends one one-to-one message on from's SendStream; its answer arrives on
// readAnswers.
func (r *openRun) sendDirect(ctx context.Context, from, to *openDevice, sched time.Time, kind byte, size int) {
	seq := r.seq.Add(1)
	st := r.log.at(seq)
	if st == nil {
		return // the log is full: a run far longer than any measurement
	}
	st.expected.Store(1)
	st.state.Store(stateSent)
	payload := make([]byte, size)
	putTag(payload, sched, seq, from.idx, kind)
	req := &messagingv1.SendStreamRequest{RequestId: seq, Message: rawdevice.SendRequest(to.dev.UserID, payload, to.dev.ID)}
	from.sendMu.Lock()
	err := from.send.Send(req)
	from.sendMu.Unlock()
	if err != nil && ctx.Err() == nil {
		r.fail(st, err.Error())
	}
}

// sendGroup sends one group message with a unary call, as SendGroupMessage is one.
func (r *openRun) sendGroup(ctx context.Context, from *openDevice, grp *openGroup, sched time.Time) {
	seq := r.seq.Add(1)
	st := r.log.at(seq)
	if st == nil {
		return
	}
	st.expected.Store(int32(len(grp.members) - 1))
	st.state.Store(stateSent)
	msg := mlsframe.PrivateMessage(grp.id, 0, mlsframe.Application, r.f.size)
	putTag(msg, sched, seq, from.idx, kindGroup)
	_, err := messagingv1.NewMessagingServiceClient(from.conn).SendGroupMessage(from.dev.Context(ctx), &messagingv1.SendGroupMessageRequest{
		GroupId: grp.id, Epoch: 0, PrivateMessage: msg, ClientMessageId: rawdevice.NewMessageID(),
	})
	switch {
	case err == nil:
		st.state.Store(stateStored)
	case ctx.Err() == nil:
		r.fail(st, err.Error())
	}
}

func (r *openRun) fail(st *sendState, msg string) {
	st.state.Store(stateFailed)
	r.failed.Add(1)
	r.firstErr.CompareAndSwap(nil, &msg)
}

// readAnswers records the answers of a device's sends.
//
// A stream the server ends is reopened, as a client would; the sends in flight on it stay
// unanswered and are counted so.
func (r *openRun) readAnswers(ctx context.Context, d *openDevice) error {
	d.sendMu.Lock()
	stream := d.send
	d.sendMu.Unlock()
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			msg := "send stream ended: " + err.Error()
			r.firstErr.CompareAndSwap(nil, &msg)
			r.streamsEnded.Add(1)
			d.sendMu.Lock()
			stream, err = messagingv1.NewMessagingServiceClient(d.conn).SendStream(d.dev.Context(ctx))
			if err == nil {
				d.send = stream
			}
			d.sendMu.Unlock()
			if err != nil {
				return fmt.Errorf("reopen send stream: %w", err)
			}
			continue
		}
		st := r.log.at(resp.GetRequestId())
		if st == nil {
			continue
		}
		if e := resp.GetError(); e != nil {
			r.fail(st, e.GetReason()+": "+e.GetMessage())
			continue
		}
		st.state.Store(stateStored)
	}
}

// receive reads a device's deliveries, measures them, answers receipts and acknowledges
// each response on the stream.
func (r *openRun) receive(ctx context.Context, d *openDevice, rs grpc.BidiStreamingClient[messagingv1.ReceiveRequest, messagingv1.ReceiveResponse]) error {
	for {
		resp, err := rs.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive: %w", err)
		}
		if len(resp.GetDeliveries()) == 0 {
			continue
		}
		now := time.Now().UnixNano()
		h := r.phase.Load()
		ids := make([][]byte, 0, len(resp.GetDeliveries()))
		for _, del := range resp.GetDeliveries() {
			ids = append(ids, del.GetMessageId())
			sched, seq, from, kind, ok := readTag(del.GetPayload())
			if !ok {
				continue
			}
			if _, dup := d.seen[seq]; dup {
				r.duplicates.Add(1)
				continue
			}
			d.seen[seq] = struct{}{}
			if st := r.log.at(seq); st != nil {
				st.delivered.Add(1)
			}
			if h != nil {
				h.add(time.Duration(now - sched))
				r.delivered.Add(1)
			}
			if kind == kindDirect && r.f.receiptShare > 0 && rand.Float64() < r.f.receiptShare && from < len(r.devices) {
				r.sendDirect(ctx, d, r.devices[from], time.Unix(0, now), kindReceipt, max(64, tagSize+16))
			}
		}
		if err := rs.Send(&messagingv1.ReceiveRequest{AckMessageIds: ids}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("acknowledge: %w", err)
		}
	}
}

// outstanding counts stored messages not yet delivered to every recipient, and sends not
// yet answered.
func (r *openRun) outstanding() int64 {
	lost, unanswered := r.missing()
	return lost + unanswered
}

func (r *openRun) missing() (lost, unanswered int64) {
	n := r.seq.Load()
	for seq := uint64(1); seq <= n; seq++ {
		st := r.log.at(seq)
		if st == nil {
			break
		}
		switch st.state.Load() {
		case stateStored:
			if st.delivered.Load() < st.expected.Load() {
				lost++
			}
		case stateSent:
			unanswered++
		}
	}
	return lost, unanswered
}
