package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// An honest payload starts with honestMagic, the send time (Unix ns) and the request id,
// so that a receiver tells its sender's messages from what attackers put in its inbox.
var honestMagic = []byte("GYNHONST")

const honestHeader = 24

// honestLoad drives pairs that keep chatting whatever happens, as real clients do: a
// sender whose stream breaks reopens it, a receiver whose stream breaks reconnects with
// backoff. It tracks every message from send to first delivery, so that at the end it
// can say which stored messages never arrived.
type honestLoad struct {
	pairs    []*honestPair
	inflight int
	size     int

	phase atomic.Int32
	stop  chan struct{}
	wg    sync.WaitGroup

	mu    sync.Mutex
	stats [phaseCount]*honestStats
}

// honestStats is one phase's honest figures. Deliveries count in the phase they arrive
// in; refusals in the phase the send was made in.
type honestStats struct {
	delivered, duplicates int
	latencies             []time.Duration
	storeLatencies        []time.Duration // send → answered as stored
	refused               map[string]int  // honest sends the server refused, by reason
	recvErrors            map[string]int  // honest Receive streams that broke, by reason
	junk                  int             // attacker deliveries the honest receivers got
	junkBytes             int64
}

func (s *honestStats) pct(p float64) time.Duration { return percentile(s.latencies, p) }

// percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Round(10 * time.Microsecond)
}

// honestPair is a pair with the bookkeeping of each message.
type honestPair struct {
	*pair
	load  *honestLoad
	slots chan struct{} // one token per message in flight end to end

	mu      sync.Mutex
	sent    map[uint64]*sentMsg  // sent, not yet delivered
	pending map[uint64]time.Time // sent, not yet answered: when
	seen    []uint64             // bit n: request n was delivered
}

type sentMsg struct {
	phase  int
	at     time.Time
	stored bool // the server answered that it stored it
	slot   bool // it holds a slot
}

func newHonestLoad(pairs []*pair, inflight, size int) *honestLoad {
	h := &honestLoad{inflight: inflight, size: size, stop: make(chan struct{})}
	for i := range h.stats {
		h.stats[i] = &honestStats{refused: map[string]int{}, recvErrors: map[string]int{}}
	}
	for _, p := range pairs {
		h.pairs = append(h.pairs, &honestPair{pair: p, load: h, slots: make(chan struct{}, inflight), sent: map[uint64]*sentMsg{}, pending: map[uint64]time.Time{}})
	}
	return h
}

func (h *honestLoad) setPhase(p int) { h.phase.Store(int32(p)) }

func (h *honestLoad) current() int { return int(h.phase.Load()) }

// start opens every receiver's stream, waits for its (empty) backlog, then starts the
// senders.
func (h *honestLoad) start(ctx context.Context) error {
	for _, p := range h.pairs {
		ready := make(chan struct{})
		h.wg.Add(1)
		go func() { defer h.wg.Done(); p.receive(ctx, ready) }()
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return errors.New("an honest receiver did not get its backlog within 30 s")
		}
	}
	for _, p := range h.pairs {
		h.wg.Add(1)
		go func() { defer h.wg.Done(); p.send(ctx) }()
	}
	return nil
}

func (h *honestLoad) stopSending() { close(h.stop) }

// wait returns when every sender and receiver has ended (the context passed to start is
// done).
func (h *honestLoad) wait() { h.wg.Wait() }

// inFlight counts messages sent and neither delivered nor refused.
func (h *honestLoad) inFlight() int {
	n := 0
	for _, p := range h.pairs {
		n += len(p.slots)
	}
	return n
}

// lostByPhase counts, by the phase they were sent in, messages the server stored and
// never delivered.
func (h *honestLoad) lostByPhase() [phaseCount]int {
	var out [phaseCount]int
	for _, p := range h.pairs {
		p.mu.Lock()
		for _, m := range p.sent {
			if m.stored {
				out[m.phase]++
			}
		}
		p.mu.Unlock()
	}
	return out
}

// unconfirmed counts sends whose stream broke before the answer and that never arrived.
func (h *honestLoad) unconfirmed() int {
	n := 0
	for _, p := range h.pairs {
		p.mu.Lock()
		for _, m := range p.sent {
			if !m.stored {
				n++
			}
		}
		p.mu.Unlock()
	}
	return n
}

// snapshot returns a sorted copy of a phase's figures.
func (h *honestLoad) snapshot(phase int) honestStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := *h.stats[phase]
	s.latencies = slices.Clone(s.latencies)
	slices.Sort(s.latencies)
	return s
}

func (h *honestLoad) record(fn func(*honestStats)) {
	h.mu.Lock()
	fn(h.stats[h.current()])
	h.mu.Unlock()
}

// outcome names the result of a call for the report: "ok", the error's stable reason, or
// its gRPC code when it has none (a transport limit, a cancelled call).
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	if r := server.Reason(err); r != "" {
		return r
	}
	return status.Code(err).String()
}

// release frees the slot of message id if it still holds one. Callers hold p.mu.
func (p *honestPair) release(m *sentMsg) {
	if m.slot {
		m.slot = false
		<-p.slots
	}
}

// send streams messages to the receiver while it has free slots, reopening its stream
// when it breaks, until the load stops.
func (p *honestPair) send(ctx context.Context) {
	c := messagingv1.NewMessagingServiceClient(p.conn)
	payload := make([]byte, p.load.size)
	copy(payload, honestMagic)
	var id uint64
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		stream, err := c.SendStream(p.sender.Context(ctx))
		if err != nil {
			p.load.record(func(s *honestStats) { s.refused["open: "+outcome(err)]++ })
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		errc := make(chan error, 1)
		go func() { errc <- p.readAnswers(stream) }()
		stopped := false
	sending:
		for {
			select {
			case p.slots <- struct{}{}:
			case err := <-errc:
				p.streamBroke(err)
				break sending
			case <-ctx.Done():
				return
			case <-p.load.stop:
				// Close the stream and wait for every answer: what it sent is then stored
				// or refused.
				stream.CloseSend()
				select {
				case err := <-errc:
					p.streamBroke(err)
				case <-ctx.Done():
				}
				stopped = true
				break sending
			}
			id++
			now := time.Now()
			p.mu.Lock()
			p.sent[id] = &sentMsg{phase: p.load.current(), at: now, slot: true}
			p.pending[id] = now
			p.mu.Unlock()
			binary.BigEndian.PutUint64(payload[8:], uint64(now.UnixNano()))
			binary.BigEndian.PutUint64(payload[16:], id)
			req := &messagingv1.SendStreamRequest{RequestId: id, Message: rawdevice.SendRequest(p.receiver.UserID, payload, p.receiver.ID)}
			if err := stream.Send(req); err != nil {
				// The real error comes from Recv.
				if ctx.Err() != nil {
					return
				}
				p.streamBroke(<-errc)
				break sending
			}
			backoff = 100 * time.Millisecond
		}
		if stopped {
			return
		}
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// readAnswers reads a send stream's answers until it ends.
func (p *honestPair) readAnswers(stream grpc.BidiStreamingClient[messagingv1.SendStreamRequest, messagingv1.SendStreamResponse]) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		p.mu.Lock()
		m := p.sent[resp.GetRequestId()]
		if at, ok := p.pending[resp.GetRequestId()]; ok {
			delete(p.pending, resp.GetRequestId())
			if resp.GetError() == nil {
				d := time.Since(at)
				p.load.record(func(s *honestStats) { s.storeLatencies = append(s.storeLatencies, d) })
			}
		}
		if e := resp.GetError(); e != nil {
			if m != nil {
				p.release(m)
				delete(p.sent, resp.GetRequestId())
				p.load.mu.Lock()
				p.load.stats[m.phase].refused[e.GetReason()]++
				p.load.mu.Unlock()
			}
		} else if m != nil {
			m.stored = true // delivered messages are gone from sent already
		}
		p.mu.Unlock()
	}
}

// streamBroke handles the end of a send stream: sends without an answer may or may not
// be stored, so they give their slots back and stay tracked as unconfirmed.
func (p *honestPair) streamBroke(err error) {
	if !errors.Is(err, io.EOF) && p.load.current() != phaseDrain {
		p.load.record(func(s *honestStats) { s.refused["stream: "+outcome(err)]++ })
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.pending)
	for _, m := range p.sent {
		if !m.stored {
			p.release(m)
		}
	}
}

// delivered records the delivery of request id and reports whether it came before.
func (p *honestPair) delivered(id uint64) (dup bool, m *sentMsg) {
	word, bit := id/64, uint64(1)<<(id%64)
	for uint64(len(p.seen)) <= word {
		p.seen = append(p.seen, 0)
	}
	if p.seen[word]&bit != 0 {
		return true, nil
	}
	p.seen[word] |= bit
	m = p.sent[id]
	if m != nil {
		p.release(m)
		delete(p.sent, id)
	}
	return false, m
}

// receive reads the receiver's deliveries and acknowledges each batch on the stream,
// reconnecting with backoff whenever the stream breaks, until ctx ends. It closes ready
// when the first stream has delivered its backlog.
func (p *honestPair) receive(ctx context.Context, ready chan<- struct{}) {
	c := messagingv1.NewMessagingServiceClient(p.rconn)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := p.receiveOnce(ctx, c, func() {
			if ready != nil {
				close(ready)
				ready = nil
			}
			backoff = 100 * time.Millisecond
		})
		if ctx.Err() != nil {
			return
		}
		p.load.record(func(s *honestStats) { s.recvErrors[outcome(err)]++ })
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (p *honestPair) receiveOnce(ctx context.Context, c messagingv1.MessagingServiceClient, synced func()) error {
	sctx, cancel := context.WithCancel(p.receiver.Context(ctx))
	defer cancel()
	// The receive limit of the client (libs/client): the largest response a server sends.
	stream, err := c.Receive(sctx, grpc.MaxCallRecvMsgSize(messagingv1.MaxReceiveResponseSize))
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if resp.GetBacklogComplete() {
			synced()
		}
		if len(resp.GetDeliveries()) == 0 {
			continue
		}
		now := time.Now()
		ids := make([][]byte, 0, len(resp.GetDeliveries()))
		var lat []time.Duration
		dups, junk := 0, 0
		var junkBytes int64
		p.mu.Lock()
		for _, d := range resp.GetDeliveries() {
			if len(d.GetMessageId()) > 0 {
				ids = append(ids, d.GetMessageId())
			}
			pl := d.GetPayload()
			if d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_MESSAGE || len(pl) < honestHeader || !bytes.Equal(pl[:8], honestMagic) {
				junk++
				junkBytes += int64(len(pl))
				continue
			}
			dup, m := p.delivered(binary.BigEndian.Uint64(pl[16:]))
			switch {
			case dup:
				dups++
			case m != nil:
				lat = append(lat, now.Sub(m.at))
			}
		}
		p.mu.Unlock()
		p.load.record(func(s *honestStats) {
			s.delivered += len(lat)
			s.duplicates += dups
			s.latencies = append(s.latencies, lat...)
			s.junk += junk
			s.junkBytes += junkBytes
		})
		if len(ids) > 0 {
			if err := stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: ids}); err != nil {
				_, err = stream.Recv() // the status that ended the stream
				return err
			}
		}
	}
}

// readBacklog counts the honest and other messages in a receiver's inbox, on a new
// stream and without acknowledging.
func readBacklog(ctx context.Context, p *pair) (honest, junk int, err error) {
	sctx, cancel := context.WithTimeout(p.receiver.Context(ctx), 30*time.Second)
	defer cancel()
	stream, err := messagingv1.NewMessagingServiceClient(p.rconn).Receive(sctx)
	if err != nil {
		return 0, 0, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return honest, junk, fmt.Errorf("read the inbox of %s: %s: %w", p.receiver.Username, outcome(err), err)
		}
		for _, d := range resp.GetDeliveries() {
			if pl := d.GetPayload(); len(pl) >= honestHeader && bytes.Equal(pl[:8], honestMagic) {
				honest++
			} else {
				junk++
			}
		}
		if resp.GetBacklogComplete() {
			return honest, junk, nil
		}
	}
}

// preKeyUpload is a device's first prekey upload: a signed EC prekey, a last-resort
// ML-KEM prekey and n one-time prekeys of each kind.
func preKeyUpload(d *rawdevice.Device, n int) (*authv1.UploadPreKeysRequest, error) {
	store := keys.NewPreKeyStore()
	now := time.Now()
	spk, err := store.GenerateSignedPreKey(d.Identity, now)
	if err != nil {
		return nil, err
	}
	lrk, err := store.GenerateLastResortKEMPreKey(d.Identity, now)
	if err != nil {
		return nil, err
	}
	req := &authv1.UploadPreKeysRequest{
		SignedEcPrekey:      &authv1.SignedEcPreKey{Id: spk.ID, CreatedAt: spk.Created.Unix(), PublicKey: spk.Key.Bytes(), Signature: spk.Signature},
		LastResortKemPrekey: &authv1.SignedKemPreKey{Id: lrk.ID, CreatedAt: lrk.Created.Unix(), PublicKey: lrk.Key.Bytes(), Signature: lrk.Signature},
	}
	if n == 0 {
		return req, nil
	}
	ots, err := store.GenerateOneTimePreKeys(n)
	if err != nil {
		return nil, err
	}
	for _, k := range ots {
		req.OneTimeEcPrekeys = append(req.OneTimeEcPrekeys, &authv1.EcPreKey{Id: k.ID, PublicKey: k.Key.Bytes()})
	}
	kems, err := store.GenerateKEMPreKeys(d.Identity, n, now)
	if err != nil {
		return nil, err
	}
	for _, k := range kems {
		req.OneTimeKemPrekeys = append(req.OneTimeKemPrekeys, &authv1.SignedKemPreKey{Id: k.ID, CreatedAt: k.Created.Unix(), PublicKey: k.Key.Bytes(), Signature: k.Signature})
	}
	return req, nil
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
