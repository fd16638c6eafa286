package messaging

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

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

// eventBuffer is how many live events wait for a stream before it falls back to reading
// its inbox. It bounds the memory of an idle stream (docs/perf-idle.md: 16 saves 384 B per
// idle stream against 64 and costs no throughput).
const eventBuffer = 16

// liveStream is the mailbox of one Receive stream.
type liveStream struct {
	events     chan *eventsv1.LiveEvent
	overflowed atomic.Bool
	kick       chan struct{} // signalled when events were dropped
	superseded chan struct{} // closed when a newer stream of the device took over
}

// attach registers a new stream for key and ends the previous one.
func (h *hub) attach(key inboxKey) *liveStream {
	st := &liveStream{
		events:     make(chan *eventsv1.LiveEvent, eventBuffer),
		kick:       make(chan struct{}, 1),
		superseded: make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.streams[key]; old != nil {
		close(old.superseded)
	}
	h.streams[key] = st
	return st
}

func (h *hub) detach(key inboxKey, st *liveStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams[key] == st {
		delete(h.streams, key)
	}
}

func (h *hub) get(key inboxKey) *liveStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[key]
}

// offer hands an event to the stream without ever blocking the NATS dispatcher. When the
// buffer is full the event is dropped and the stream resynchronises from its inbox.
func (st *liveStream) offer(ev *eventsv1.LiveEvent) {
	select {
	case st.events <- ev:
	default:
		st.overflowed.Store(true)
		select {
		case st.kick <- struct{}{}:
		default:
		}
	}
}

// maxBatch bounds the deliveries of one ReceiveResponse.
const maxBatch = 256

// receiver is the state of one Receive call.
type receiver struct {
	s        *Server
	rs       grpc.ServerStreamingServer[messagingv1.ReceiveResponse]
	inbox    msgstore.Inbox
	cursor   msgstore.Cursor
	inflight map[msgstore.ID]struct{} // sent, not yet acknowledged
	lagging  bool                     // the inbox may hold messages not sent yet
	// backlogDone is set once the stored backlog has been sent entirely and the client
	// was told so with backlog_complete.
	backlogDone bool
}

// Receive streams the calling device's backlog, then its live deliveries.
func (s *Server) Receive(_ *messagingv1.ReceiveRequest, rs grpc.ServerStreamingServer[messagingv1.ReceiveResponse]) error {
	ctx := rs.Context()
	p, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := s.allow("receive", p.UserID+"/"+inboxOf(p.UserID, p.DeviceID).DeviceID); err != nil {
		return err
	}
	key := inboxKey{p.UserID, p.DeviceID}
	// Attach before reading the backlog, so nothing stored in between is missed; what
	// arrives twice is recognised by its id.
	st := s.hub.attach(key)
	defer s.hub.detach(key, st)

	r := &receiver{s: s, rs: rs, inbox: inboxOf(p.UserID, p.DeviceID), inflight: make(map[msgstore.ID]struct{})}
	if err := r.drain(ctx); err != nil {
		return err
	}
	// batch is allocated on the first live event: most streams idle.
	var batch []*messagingv1.Delivery
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-st.superseded:
			return server.Error(codes.Aborted, reasonSuperseded, "this device opened a newer Receive stream")
		case <-st.kick:
			if st.overflowed.Swap(false) {
				if err := r.resync(ctx); err != nil {
					return err
				}
			}
		case ev := <-st.events:
			batch = batch[:0]
			for ev != nil {
				var err error
				if batch, err = r.handle(ctx, ev, batch); err != nil {
					return err
				}
				ev = nil
				if len(batch) < maxBatch {
					select {
					case ev = <-st.events:
					default:
					}
				}
			}
			if len(batch) > 0 {
				if err := rs.Send(&messagingv1.ReceiveResponse{Deliveries: batch}); err != nil {
					return err
				}
			}
			if r.lagging && len(r.inflight) < r.s.window {
				if err := r.drain(ctx); err != nil {
					return err
				}
			}
		}
	}
}

// handle applies one live event, appending deliveries to send to batch.
func (r *receiver) handle(ctx context.Context, ev *eventsv1.LiveEvent, batch []*messagingv1.Delivery) ([]*messagingv1.Delivery, error) {
	switch e := ev.GetEvent().(type) {
	case *eventsv1.LiveEvent_Delivery:
		d := e.Delivery
		if len(d.GetMessageId()) == 0 { // ephemeral: never stored, never acked
			return append(batch, d), nil
		}
		id := msgstore.ID(d.GetMessageId())
		if _, sent := r.inflight[id]; sent {
			return batch, nil
		}
		if r.lagging || len(r.inflight) >= r.s.window {
			r.lagging = true // it is in the inbox; drain sends it when the window frees up
			return batch, nil
		}
		r.inflight[id] = struct{}{}
		return append(batch, d), nil
	case *eventsv1.LiveEvent_Acked:
		for _, b := range e.Acked.GetMessageIds() {
			if len(b) == 16 {
				delete(r.inflight, msgstore.ID(b))
			}
		}
		return batch, nil
	case *eventsv1.LiveEvent_Removed:
		return nil, server.Error(codes.Unauthenticated, reasonDeviceRemoved, "this device has been removed")
	}
	return batch, nil
}

// drain sends stored messages after the cursor until the inbox is exhausted or the window
// is full. The response that exhausts the inbox for the first time carries
// backlog_complete; a backlog larger than the window completes as the client acks.
func (r *receiver) drain(ctx context.Context) error {
	for {
		room := r.s.window - len(r.inflight)
		if room <= 0 {
			r.lagging = true
			return nil
		}
		// Messages already sent live come back until they are acked; read past them.
		limit := min(room+len(r.inflight), msgstore.MaxBatch)
		msgs, err := r.s.inboxes.Read(ctx, r.inbox, r.cursor, limit)
		if err != nil {
			return r.s.internal(ctx, "read inbox", err)
		}
		var out []*messagingv1.Delivery
		for _, m := range msgs {
			if len(r.inflight) >= r.s.window {
				break
			}
			r.cursor = m.Cursor
			if _, sent := r.inflight[m.ID]; sent {
				continue
			}
			d, err := storedDelivery(m)
			if err != nil {
				r.s.log.WarnContext(ctx, "messaging: undecodable stored delivery skipped", "err", err)
				continue
			}
			r.inflight[m.ID] = struct{}{}
			out = append(out, d)
		}
		exhausted := len(msgs) < limit && len(r.inflight) < r.s.window
		for len(out) > 0 {
			n := min(len(out), maxBatch)
			resp := &messagingv1.ReceiveResponse{Deliveries: out[:n]}
			out = out[n:]
			if len(out) == 0 && exhausted && !r.backlogDone {
				resp.BacklogComplete, r.backlogDone = true, true
			}
			if err := r.rs.Send(resp); err != nil {
				return err
			}
		}
		if exhausted {
			r.lagging = false
			if !r.backlogDone {
				r.backlogDone = true
				return r.rs.Send(&messagingv1.ReceiveResponse{BacklogComplete: true})
			}
			return nil
		}
	}
}

// resync recovers from dropped live events: forget acknowledgements we may have missed by
// keeping only in-flight ids still in the inbox, then send whatever is unsent.
func (r *receiver) resync(ctx context.Context) error {
	present := make(map[msgstore.ID]struct{}, len(r.inflight))
	var cursor msgstore.Cursor
	for {
		msgs, err := r.s.inboxes.Read(ctx, r.inbox, cursor, msgstore.MaxBatch)
		if err != nil {
			return r.s.internal(ctx, "read inbox", err)
		}
		for _, m := range msgs {
			cursor = m.Cursor
			if _, ok := r.inflight[m.ID]; ok {
				present[m.ID] = struct{}{}
			}
		}
		if len(msgs) < msgstore.MaxBatch {
			break
		}
	}
	r.inflight = present
	r.cursor = nil
	return r.drain(ctx)
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
