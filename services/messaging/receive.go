package messaging

import (
	"context"
	"errors"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/server"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// inboxKey names one device.
type inboxKey struct {
	user   string
	device uint32
}

// hub maps each device to its one Receive stream on this instance.
type hub struct {
	mu      sync.Mutex
	streams map[inboxKey]*liveStream
}

func newHub() *hub { return &hub{streams: make(map[inboxKey]*liveStream)} }

// attach registers st as the stream of key and ends the previous one.
func (h *hub) attach(key inboxKey, st *liveStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.streams[key]; old != nil {
		close(old.superseded)
	}
	h.streams[key] = st
}

func (h *hub) detach(key inboxKey, st *liveStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams[key] == st {
		delete(h.streams, key)
	}
}

// snapshot returns the streams open now.
func (h *hub) snapshot() map[inboxKey]*liveStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.streams)
}

func (h *hub) get(key inboxKey) *liveStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[key]
}

// eventBuffer is how many live events wait for a stream before it falls back to reading
// its inbox. It bounds the memory of an idle stream (docs/perf-idle.md: 16 saves 384 B per
// idle stream against 64 and costs no throughput).
const eventBuffer = 16

// maxBatch bounds the deliveries of one ReceiveResponse.
const maxBatch = 256

// responseBudget bounds the encoded deliveries of one ReceiveResponse. Without it a
// backlog of large messages packs into a response past the transport's message limit,
// the stream fails on every reconnect before the device learns a single id, and the
// inbox stays jammed. A delivery larger than the budget goes alone, so no response
// exceeds messagingv1.MaxReceiveResponseSize, the receive limit clients set.
const responseBudget = 256 << 10

// A stream's byte window bounds the encoded deliveries it has sent and not seen
// acknowledged, besides the count window (Config.Window). It starts at initialWindowBytes
// and grows by every acknowledged byte up to maxWindowBytes, as TCP's slow start does: a
// device that acknowledges what it gets soon has megabytes in flight, while one that
// reopens its stream and drops it unacknowledged, again and again, makes the server read
// and send no more than initialWindowBytes each time (issue 18: 16 such devices cost
// honest pairs a third of their throughput when each reconnect read 1 MiB and more). A
// delivery larger than the window goes when nothing else is in flight.
const (
	initialWindowBytes = 256 << 10
	maxWindowBytes     = 8 << 20
)

// readBudget bounds the message bytes one step of draining the inbox reads, so that the
// memory of a stream does not grow with its backlog.
const readBudget = 256 << 10

// pumpLinger is how long a stream's pump waits for more work before its goroutine ends.
// A busy stream keeps its pump; an idle one holds no goroutine but the handler's.
const pumpLinger = time.Second

// liveStream is one Receive call. Idle, it is a mailbox and one parked goroutine, the
// call's handler, which only waits for the call to end: the work runs on goroutines
// started when there is some, so that the many idle streams of a server do not each keep
// the stack that sending and reading grew (docs/perf-idle.md).
//
//   - The pump sends: the backlog, then live events as they arrive. It starts when an
//     event or acknowledgement needs it and ends after pumpLinger without work.
//   - The ack reader reads the client's acknowledgements while deliveries are in flight
//     and ends when none are.
type liveStream struct {
	s *Server
	// out sends a response on the call; in receives the client's acknowledgements, nil on a
	// Subscribe call, whose acknowledgements come by AckMessages.
	out    func(*messagingv1.ReceiveResponse) error
	in     func() (*messagingv1.ReceiveRequest, error)
	ctx    context.Context
	caller authn.Principal
	inbox  msgstore.Inbox

	events     chan *eventsv1.LiveEvent
	overflowed atomic.Bool   // events were dropped: resynchronise from the inbox
	kick       chan struct{} // wakes a lingering pump for work that is not an event
	superseded chan struct{} // closed when a newer stream of the device took over
	stop       chan struct{} // closed when the call ends
	fatal      chan error    // the first error that ends the call

	// traced holds the spans of live deliveries on their way to the client, by event;
	// tracing counts them so that an untraced stream never takes mu to look.
	traced  map[*eventsv1.LiveEvent]trace.Span
	tracing atomic.Int32

	mu      sync.Mutex
	pumping bool
	closed  bool
	reading bool // an ack reader runs
	readEOF bool // the client closed its side: no more acknowledgements on the stream
	// inflight holds deliveries sent and not yet acknowledged, with their encoded size:
	// at most the server's window of them and, unless one alone, windowBytes of bytes.
	inflight      map[msgstore.ID]int
	inflightBytes int
	windowBytes   int
	// lagging means the inbox may hold messages not sent yet: the window was full, or
	// the backlog has not been read.
	lagging bool
	pumped  sync.WaitGroup

	// Owned by the pump.
	cursor      msgstore.Cursor
	backlogDone bool // the client was told backlog_complete
	batch       response
}

// response gathers the deliveries of one ReceiveResponse within maxBatch and
// responseBudget.
type response struct {
	deliveries []*messagingv1.Delivery
	size       int          // encoded size of the deliveries field
	spans      []trace.Span // of traced live deliveries, ended once sent
}

// deliverySize is what d adds to an encoded ReceiveResponse.
func deliverySize(d *messagingv1.Delivery) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(d))
}

// fits reports whether a delivery of encoded size n may join r; anything fits an empty
// response.
func (r *response) fits(n int) bool {
	return len(r.deliveries) == 0 || len(r.deliveries) < maxBatch && r.size+n <= responseBudget
}

func (r *response) add(d *messagingv1.Delivery, n int) {
	r.deliveries = append(r.deliveries, d)
	r.size += n
}

// addTraced adds a live delivery whose span ends when r has been sent.
func (r *response) addTraced(d *messagingv1.Delivery, n int, span trace.Span) {
	r.add(d, n)
	r.spans = append(r.spans, span)
}

// reset empties r, keeping its array but not the deliveries.
func (r *response) reset() {
	clear(r.deliveries)
	r.deliveries, r.size = r.deliveries[:0], 0
}

// endSpans ends the spans of r's traced deliveries, as failed when err is set.
func (r *response) endSpans(err error) {
	for _, span := range r.spans {
		if err != nil {
			span.SetStatus(otelcodes.Error, "")
		}
		span.End()
	}
	clear(r.spans)
	r.spans = r.spans[:0]
}

// Receive streams the calling device's backlog, then its live deliveries, and takes its
// acknowledgements.
func (s *Server) Receive(rs grpc.BidiStreamingServer[messagingv1.ReceiveRequest, messagingv1.ReceiveResponse]) error {
	return s.receive(rs.Context(), rs.Send, rs.Recv)
}

// Subscribe is Receive for clients that cannot send on a stream: the same stream, whose
// acknowledgements arrive by AckMessages, which reaches it as a live event (server.go,
// publish) wherever it is connected.
func (s *Server) Subscribe(_ *messagingv1.SubscribeRequest, ss grpc.ServerStreamingServer[messagingv1.SubscribeResponse]) error {
	return s.receive(ss.Context(), func(r *messagingv1.ReceiveResponse) error {
		return ss.Send(&messagingv1.SubscribeResponse{Deliveries: r.Deliveries, BacklogComplete: r.BacklogComplete, PrekeysLow: r.PrekeysLow})
	}, nil)
}

// receive serves one Receive or Subscribe call; in is nil on Subscribe.
func (s *Server) receive(ctx context.Context, out func(*messagingv1.ReceiveResponse) error, in func() (*messagingv1.ReceiveRequest, error)) error {
	p, err := caller(ctx)
	if err != nil {
		return err
	}
	deviceKey := p.UserID + "/" + inboxOf(p.UserID, p.DeviceID).DeviceID
	if err := s.allow("receive", deviceKey); err != nil {
		return err
	}
	if s.limits != nil && !s.limits.Allow("redeliver|"+deviceKey) {
		return server.Error(codes.ResourceExhausted, reasonRateLimited, "this device dropped its recent streams with deliveries unacknowledged; retry later")
	}
	st := &liveStream{
		s: s, out: out, in: in, ctx: ctx, caller: p, inbox: inboxOf(p.UserID, p.DeviceID),
		events:      make(chan *eventsv1.LiveEvent, eventBuffer),
		kick:        make(chan struct{}, 1),
		superseded:  make(chan struct{}),
		stop:        make(chan struct{}),
		fatal:       make(chan error, 1),
		lagging:     true,
		windowBytes: initialWindowBytes,
		readEOF:     in == nil, // nothing to read on Subscribe
	}
	// Attach before the pump reads the backlog, so nothing stored in between is missed;
	// what arrives twice is recognised by its id.
	key := inboxKey{p.UserID, p.DeviceID}
	s.hub.attach(key, st)
	s.streamOpened(key)
	defer s.streamEnded(key, st)
	st.wake()

	select {
	case <-ctx.Done():
	case <-st.superseded:
		err = server.Error(codes.Aborted, reasonSuperseded, "this device opened a newer Receive stream")
	case err = <-st.fatal:
	}
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	close(st.stop)
	// The pump must not send once the handler has returned. An ack reader blocked in
	// Recv returns when the call ends and then touches nothing of the call.
	st.pumped.Wait()
	st.chargeDropped(deviceKey)
	return err
}

// chargeDropped charges the device of an ended stream for what it was sent and did not
// acknowledge: that will be read and sent again, and the device may not reopen until its
// debt is paid. It pays at most a fresh stream's window, what a stream that acknowledges
// nothing costs the server, so that a device whose connection drops with a large window
// in flight is not held back long.
func (st *liveStream) chargeDropped(deviceKey string) {
	if st.s.limits == nil {
		return
	}
	if dropped := st.unacknowledged(); dropped > 0 {
		st.s.limits.Debit("redeliver|"+deviceKey, min(dropped, initialWindowBytes))
	}
}

// unacknowledged returns the bytes of the deliveries the ended stream sent that are still
// in the inbox: those the device did not acknowledge, by any path, before the stream
// ended. It reads ids only, and nothing when nothing was in flight.
func (st *liveStream) unacknowledged() int {
	st.mu.Lock()
	left := maps.Clone(st.inflight)
	st.mu.Unlock()
	if len(left) == 0 {
		return 0
	}
	// The call's context is over; the reads still need one.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(st.ctx), 5*time.Second)
	defer cancel()
	bytes := 0
	var cursor msgstore.Cursor
	for len(left) > 0 {
		ids, next, err := st.s.inboxes.ReadIDs(ctx, st.inbox, cursor, msgstore.MaxBatch)
		if err != nil || len(ids) == 0 {
			break
		}
		for _, id := range ids {
			if n, ok := left[id]; ok {
				bytes += n
				delete(left, id)
			}
		}
		cursor = next
	}
	return bytes
}

// offer hands an event to the stream without ever blocking the publisher. When the buffer
// is full the event is dropped and the stream resynchronises from its inbox. A removal
// never waits in the buffer: it ends the call at once, however full the buffer is.
//
// ctx is the publisher's: a delivery sent inside a traced call is traced to the client
// (traceDelivery).
func (st *liveStream) offer(ctx context.Context, ev *eventsv1.LiveEvent) {
	if ev.GetRemoved() != nil {
		st.fail(errDeviceRemoved())
		return
	}
	if ev.GetDelivery() != nil {
		st.traceDelivery(ctx, ev)
	}
	select {
	case st.events <- ev:
	default:
		st.overflowed.Store(true)
		st.takeSpan(ev).End() // the inbox delivers it, untraced
		st.signal()
	}
	st.wake()
}

// traceDelivery starts the span of a live delivery when its sender's call is traced: a
// child of the sender's span, ended when the response carrying it has been written to
// this stream, so that one send is one trace from the sender's call to the recipient's
// delivery. The span links to this stream's own Receive span.
func (st *liveStream) traceDelivery(ctx context.Context, ev *eventsv1.LiveEvent) {
	sender := trace.SpanContextFromContext(ctx)
	if !sender.IsSampled() {
		return
	}
	// The stream's own span, traced or not, carries the process's tracer provider; a
	// span context from NATS headers carries none.
	tracer := trace.SpanFromContext(st.ctx).TracerProvider().Tracer("github.com/guardyn/guardyn/services/messaging")
	_, span := tracer.Start(trace.ContextWithSpanContext(context.Background(), sender), "messaging.deliver",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(trace.LinkFromContext(st.ctx)))
	if !span.IsRecording() {
		return
	}
	st.mu.Lock()
	if st.traced == nil {
		st.traced = make(map[*eventsv1.LiveEvent]trace.Span)
	}
	st.traced[ev] = span
	st.mu.Unlock()
	st.tracing.Add(1)
}

// takeSpan returns the span of a traced live delivery and forgets it; a no-op span for
// any other event.
func (st *liveStream) takeSpan(ev *eventsv1.LiveEvent) trace.Span {
	if st.tracing.Load() == 0 {
		return noSpan
	}
	st.mu.Lock()
	span, ok := st.traced[ev]
	delete(st.traced, ev)
	st.mu.Unlock()
	if !ok {
		return noSpan
	}
	st.tracing.Add(-1)
	return span
}

// noSpan is what takeSpan returns for an untraced event.
var noSpan = trace.SpanFromContext(context.Background())

// signal wakes a lingering pump for work other than an event.
func (st *liveStream) signal() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// wake starts the pump unless it runs or the call is over.
func (st *liveStream) wake() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pumping || st.closed {
		return
	}
	st.pumping = true
	st.pumped.Add(1)
	go st.pump()
}

// fail ends the call with err, unless it is already ending.
func (st *liveStream) fail(err error) {
	select {
	case st.fatal <- err:
	default:
	}
}

// pump sends until it has had no work for pumpLinger.
func (st *liveStream) pump() {
	defer st.pumped.Done()
	linger := time.NewTimer(pumpLinger)
	defer linger.Stop()
	var ev *eventsv1.LiveEvent
	for {
		if err := st.work(ev); err != nil {
			st.fail(err)
			st.mu.Lock()
			st.pumping = false
			st.mu.Unlock()
			return
		}
		ev = nil
		linger.Reset(pumpLinger)
		select {
		case ev = <-st.events:
			continue
		case <-st.kick:
			continue
		case <-linger.C:
		case <-st.stop:
		}
		// Whoever offered work while we were deciding to stop saw pumping still set and
		// left the work to us: look once more under the lock that wake takes.
		st.mu.Lock()
		if !st.closed && (len(st.events) > 0 || st.overflowed.Load() || st.lagging && st.roomLocked()) {
			st.mu.Unlock()
			continue
		}
		st.pumping = false
		st.batch = response{}
		st.mu.Unlock()
		return
	}
}

// work sends ev and whatever other events are queued, resynchronises after dropped
// events, and reads the inbox when it may hold messages not sent yet.
func (st *liveStream) work(ev *eventsv1.LiveEvent) error {
	if st.overflowed.Swap(false) {
		if err := st.resync(); err != nil {
			return err
		}
	}
	for range maxBatch {
		if ev == nil {
			select {
			case ev = <-st.events:
			default:
			}
			if ev == nil {
				break
			}
		}
		d, n, err := st.handle(ev)
		span := st.takeSpan(ev)
		if err != nil {
			span.End()
			return err
		}
		ev = nil
		if d == nil {
			span.End() // a duplicate, or left for the inbox to deliver
			continue
		}
		if !st.batch.fits(n) {
			if err := st.send(&st.batch, false); err != nil {
				span.End()
				return err
			}
		}
		if span == noSpan {
			st.batch.add(d, n)
		} else {
			st.batch.addTraced(d, n, span)
		}
	}
	if err := st.send(&st.batch, false); err != nil {
		return err
	}
	st.mu.Lock()
	drain := st.lagging && st.roomLocked()
	st.mu.Unlock()
	if drain {
		return st.drain()
	}
	return nil
}

// send sends the deliveries of r, if any, in one response and empties r. backlogDone
// marks it as the response that completes the backlog.
func (st *liveStream) send(r *response, backlogDone bool) error {
	if len(r.deliveries) == 0 && !backlogDone {
		return nil
	}
	err := st.out(&messagingv1.ReceiveResponse{Deliveries: r.deliveries, BacklogComplete: backlogDone})
	sent := len(r.deliveries) > 0
	r.endSpans(err)
	r.reset()
	if err != nil {
		return err
	}
	if sent {
		st.startReader()
	}
	return nil
}

// handle applies one live event and returns the delivery to send, if any, with its
// encoded size.
func (st *liveStream) handle(ev *eventsv1.LiveEvent) (*messagingv1.Delivery, int, error) {
	switch e := ev.GetEvent().(type) {
	case *eventsv1.LiveEvent_Delivery:
		d := e.Delivery
		if len(d.GetMessageId()) == 0 { // ephemeral: never stored, never acked
			return d, deliverySize(d), nil
		}
		id := msgstore.ID(d.GetMessageId())
		st.mu.Lock()
		defer st.mu.Unlock()
		if _, sent := st.inflight[id]; sent || st.lagging {
			return nil, 0, nil // if lagging, it is in the inbox and drain sends it in turn
		}
		n := deliverySize(d)
		if !st.fitsLocked(n) {
			st.lagging = true // it is in the inbox; drain sends it when the window frees up
			return nil, 0, nil
		}
		st.addInflight(id, n)
		return d, n, nil
	case *eventsv1.LiveEvent_Acked:
		st.acked(e.Acked.GetMessageIds())
		return nil, 0, nil
	case *eventsv1.LiveEvent_Removed:
		return nil, 0, errDeviceRemoved()
	case *eventsv1.LiveEvent_PrekeysLow:
		// A notice, not a delivery: it goes out at once, on a response of its own.
		return nil, 0, st.out(&messagingv1.ReceiveResponse{PrekeysLow: e.PrekeysLow})
	}
	return nil, 0, nil
}

// errDeviceRemoved ends the calls of a device that has left its account.
func errDeviceRemoved() error {
	return server.Error(codes.Unauthenticated, reasonDeviceRemoved, "this device has been removed")
}

// addInflight records a delivery of encoded size n as sent; st.mu is held.
func (st *liveStream) addInflight(id msgstore.ID, n int) {
	if st.inflight == nil {
		st.inflight = make(map[msgstore.ID]int)
	}
	st.inflight[id] = n
	st.inflightBytes += n
}

// forgetLocked drops a delivery from the window and reports its size; st.mu is held.
func (st *liveStream) forgetLocked(id msgstore.ID) (int, bool) {
	n, ok := st.inflight[id]
	if ok {
		delete(st.inflight, id)
		st.inflightBytes -= n
	}
	return n, ok
}

// roomLocked reports whether the window has room for another delivery of some size;
// st.mu is held.
func (st *liveStream) roomLocked() bool {
	return len(st.inflight) < st.s.window && (len(st.inflight) == 0 || st.inflightBytes < st.windowBytes)
}

// fitsLocked reports whether a delivery of encoded size n may be sent now: within both
// windows, or alone; st.mu is held.
func (st *liveStream) fitsLocked(n int) bool {
	return len(st.inflight) < st.s.window && (len(st.inflight) == 0 || st.inflightBytes+n <= st.windowBytes)
}

// acked forgets acknowledged deliveries, grows the byte window by what they took, and
// wakes the pump if that frees the window for messages waiting in the inbox.
func (st *liveStream) acked(ids [][]byte) {
	st.mu.Lock()
	for _, b := range ids {
		if len(b) != 16 {
			continue
		}
		if n, ok := st.forgetLocked(msgstore.ID(b)); ok {
			st.windowBytes = min(st.windowBytes+n, maxWindowBytes)
		}
	}
	resume := st.lagging && st.roomLocked()
	st.mu.Unlock()
	if resume {
		st.signal()
		st.wake()
	}
}

// drain sends stored messages after the cursor until the inbox is exhausted or the window
// is full. Each step reads at most readBudget bytes, whatever the backlog holds. Once a
// read finds nothing more, the client is told backlog_complete (the first time only); a
// backlog larger than the window completes as the client acks.
func (st *liveStream) drain() error {
	var out response
	for {
		st.mu.Lock()
		room, sent := st.s.window-len(st.inflight), len(st.inflight)
		if !st.roomLocked() {
			st.lagging = true
			st.mu.Unlock()
			return nil
		}
		st.mu.Unlock()
		// Messages already sent live come back until they are acked; read past them.
		limit := min(room+sent, msgstore.MaxBatch)
		msgs, err := st.s.inboxes.Read(st.ctx, st.inbox, st.cursor, limit, readBudget)
		if err != nil {
			return st.s.internal(st.ctx, "read inbox", err)
		}
		if len(msgs) == 0 {
			st.mu.Lock()
			st.lagging = false
			st.mu.Unlock()
			if st.backlogDone {
				return nil
			}
			st.backlogDone = true
			return st.send(&out, true)
		}
		// Group log notices resolve to their one stored entry (grouplog.go), within the
		// read budget: entries already in flight are not resolved again, and the page is
		// cut where the resolved payloads reach the budget.
		skip := make([]bool, len(msgs))
		st.mu.Lock()
		for i, m := range msgs {
			_, skip[i] = st.inflight[m.ID]
		}
		st.mu.Unlock()
		stored, n, err := st.s.storedDeliveries(st.ctx, msgs, skip, readBudget)
		if err != nil {
			return err
		}
		msgs = msgs[:n]
		var ds []*messagingv1.Delivery
		var sizes []int
		full := false
		st.mu.Lock()
		for i, m := range msgs {
			if _, sent := st.inflight[m.ID]; sent {
				st.cursor = m.Cursor
				continue
			}
			d := stored[i]
			if d == nil {
				st.cursor = m.Cursor
				continue
			}
			n := deliverySize(d)
			if !st.fitsLocked(n) {
				st.lagging, full = true, true
				break
			}
			st.cursor = m.Cursor
			st.addInflight(m.ID, n)
			ds, sizes = append(ds, d), append(sizes, n)
		}
		st.mu.Unlock()
		clear(msgs)
		for i, d := range ds {
			n := sizes[i]
			if !out.fits(n) {
				if err := st.send(&out, false); err != nil {
					return err
				}
			}
			out.add(d, n)
		}
		if err := st.send(&out, false); err != nil {
			return err
		}
		if full {
			return nil
		}
	}
}

// resync recovers from dropped live events: forget acknowledgements we may have missed by
// keeping only in-flight ids still in the inbox, then read the inbox from its start. It
// reads ids only: its memory is bounded by the window and one page of ids, not by the
// bodies in the inbox.
func (st *liveStream) resync() error {
	st.mu.Lock()
	gone := make(map[msgstore.ID]struct{}, len(st.inflight))
	for id := range st.inflight {
		gone[id] = struct{}{}
	}
	st.mu.Unlock()
	var cursor msgstore.Cursor
	for len(gone) > 0 {
		ids, next, err := st.s.inboxes.ReadIDs(st.ctx, st.inbox, cursor, msgstore.MaxBatch)
		if err != nil {
			return st.s.internal(st.ctx, "read inbox", err)
		}
		if len(ids) == 0 {
			break
		}
		for _, id := range ids {
			delete(gone, id)
		}
		cursor = next
	}
	st.mu.Lock()
	for id := range gone {
		st.forgetLocked(id)
	}
	st.lagging = true
	st.mu.Unlock()
	st.cursor = nil
	return nil
}

// startReader starts reading acknowledgements if deliveries await them and nobody reads.
func (st *liveStream) startReader() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reading || st.readEOF || st.closed || len(st.inflight) == 0 {
		return
	}
	st.reading = true
	go st.readAcks()
}

// readAcks applies the client's acknowledgements until none of its deliveries is in
// flight; later requests wait in the transport's flow-control window for the next reader.
func (st *liveStream) readAcks() {
	for {
		req, err := st.in()
		if err == nil {
			err = st.ack(req.GetAckMessageIds())
		}
		st.mu.Lock()
		more := err == nil && len(st.inflight) > 0 && !st.closed
		if !more {
			st.reading = false
			st.readEOF = st.readEOF || errors.Is(err, io.EOF)
		}
		st.mu.Unlock()
		if more {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) && st.ctx.Err() == nil && status.Code(err) != codes.Canceled {
			st.fail(err)
		}
		return
	}
}

// ack deletes acknowledged messages from the inbox, as AckMessages does, and frees their
// place in the window.
func (st *liveStream) ack(raw [][]byte) error {
	if len(raw) == 0 {
		return nil
	}
	if err := st.s.allow("ack", st.caller.UserID); err != nil {
		return err
	}
	ids, err := messageIDs(raw)
	if err != nil {
		return err
	}
	if err := st.s.inboxes.Delete(st.ctx, st.inbox, ids); err != nil {
		return st.s.internal(st.ctx, "delete acknowledged messages", err)
	}
	st.acked(raw)
	return nil
}

// messageIDs parses acknowledged message ids.
func messageIDs(raw [][]byte) ([]msgstore.ID, error) {
	ids := make([]msgstore.ID, 0, len(raw))
	for _, b := range raw {
		if len(b) != 16 {
			return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "message ids are 16 bytes, got %d", len(b))
		}
		ids = append(ids, msgstore.ID(b))
	}
	return ids, nil
}

// storedDelivery turns an inbox entry back into the Delivery the client sees. One-to-one
// envelopes are stored as they came; group deliveries are stored as an encoded Delivery
// carrying their group id and epoch.
func storedDelivery(m msgstore.Message) (*messagingv1.Delivery, error) {
	d := &messagingv1.Delivery{}
	if messagingv1.DeliveryKind(m.Kind) == messagingv1.DeliveryKind_DELIVERY_KIND_MESSAGE {
		d.Kind, d.Payload = messagingv1.DeliveryKind_DELIVERY_KIND_MESSAGE, m.Body
	} else if err := proto.Unmarshal(m.Body, d); err != nil {
		return nil, err
	}
	d.MessageId = append([]byte(nil), m.ID[:]...)
	d.ServerTime = timestamppb.New(m.Timestamp)
	return d, nil
}
