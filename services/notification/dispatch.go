package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/kv"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// durable is the consumer name every notification instance shares: each notice goes to one.
const durable = "notification"

// coalescer remembers when each device was last pushed, so a device is pushed at most once
// per window however many messages arrive. Memory is bounded: entries older than the
// window are swept as the map grows.
type coalescer struct {
	window time.Duration
	now    func() time.Time

	mu        sync.Mutex
	last      map[string]time.Time
	sweptSize int
}

func newCoalescer(window time.Duration, now func() time.Time) *coalescer {
	return &coalescer{window: window, now: now, last: make(map[string]time.Time), sweptSize: 1024}
}

// claim reports whether device may be pushed now, and if so records the push.
func (c *coalescer) claim(device string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if t, ok := c.last[device]; ok && now.Sub(t) < c.window {
		return false
	}
	c.last[device] = now
	if len(c.last) >= 2*c.sweptSize {
		for k, t := range c.last {
			if now.Sub(t) >= c.window {
				delete(c.last, k)
			}
		}
		c.sweptSize = max(1024, len(c.last))
	}
	return true
}

// release forgets a claim whose push failed, so the retry is not coalesced away.
func (c *coalescer) release(device string) {
	c.mu.Lock()
	delete(c.last, device)
	c.mu.Unlock()
}

// Consumer is a running consumer of delivery notices.
type Consumer struct {
	cc      jetstream.ConsumeContext
	work    chan jetstream.Msg
	workers sync.WaitGroup
	cancel  context.CancelFunc
}

// Stop stops fetching and waits for the pushes in flight.
func (c *Consumer) Stop() {
	c.cc.Stop()
	<-c.cc.Closed()
	close(c.work)
	c.workers.Wait()
	c.cancel()
}

// Consume creates StreamNotify if needed and pushes for its notices until Stop, with
// Config.Workers pushes in flight.
func (s *Server) Consume(ctx context.Context, b *bus.Bus) (*Consumer, error) {
	if err := b.EnsureNotify(ctx); err != nil {
		return nil, err
	}
	cons, err := b.JetStream().CreateOrUpdateConsumer(ctx, bus.StreamNotify, jetstream.ConsumerConfig{
		Durable:       durable,
		FilterSubject: bus.SubjectDeliveryNotices,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    s.cfg.MaxAttempts + 1,
		AckWait:       time.Minute,
		MaxAckPending: 4 * s.cfg.Workers,
	})
	if err != nil {
		return nil, fmt.Errorf("notification consumer: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Consumer{work: make(chan jetstream.Msg, s.cfg.Workers), cancel: cancel}
	for range s.cfg.Workers {
		c.workers.Add(1)
		go func() {
			defer c.workers.Done()
			for msg := range c.work {
				s.handle(runCtx, msg)
			}
		}()
	}
	c.cc, err = cons.Consume(func(msg jetstream.Msg) { c.work <- msg },
		jetstream.PullMaxMessages(2*s.cfg.Workers),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.cfg.Logger.Warn("notification: consume", "err", err)
		}))
	if err != nil {
		close(c.work)
		c.workers.Wait()
		cancel()
		return nil, fmt.Errorf("notification consume: %w", err)
	}
	return c, nil
}

func decodeNotice(b []byte) (*eventsv1.DeliveryNotice, error) {
	var n eventsv1.DeliveryNotice
	if err := proto.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	if _, err := bus.EscapeToken(n.GetDevice().GetUserId()); err != nil || n.GetDevice().GetDeviceId() == 0 {
		return nil, errors.New("delivery notice: no device")
	}
	return &n, nil
}

// outcome is what handling a notice came to, for tests and logs.
type outcome int

const (
	outcomePushed outcome = iota
	outcomeSkipped
	outcomeRetry
	outcomeDead
	outcomeGone
)

// handle pushes for one notice and settles the message.
func (s *Server) handle(ctx context.Context, msg jetstream.Msg) {
	n, err := decodeNotice(msg.Data())
	if err != nil {
		s.cfg.Logger.Warn("notification: malformed notice dropped", "err", err)
		_ = msg.TermWithReason("malformed")
		return
	}
	attempt := 1
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 0 {
		attempt = int(md.NumDelivered)
	}
	switch s.pushNotice(ctx, n, attempt) {
	case outcomeRetry:
		_ = bus.NakWithBackoff(msg, s.cfg.RetryDelay, s.cfg.MaxRetryDelay)
	default:
		_ = msg.Ack()
	}
}

// pushNotice wakes the device of n unless it is online or was pushed within the window.
func (s *Server) pushNotice(ctx context.Context, n *eventsv1.DeliveryNotice, attempt int) outcome {
	user, device := n.GetDevice().GetUserId(), n.GetDevice().GetDeviceId()
	log := s.cfg.Logger.With(slog.Uint64("device", uint64(device)))
	if s.online(ctx, user, device) {
		return outcomeSkipped
	}
	name := user + "/" + strconv.FormatUint(uint64(device), 10)
	if attempt == 1 && !s.coalesce.claim(name) {
		return outcomeSkipped
	}
	key, _ := deviceKey(targetPrefix, user, device)
	var t storedTarget
	err := s.cfg.Store.View(ctx, func(tx kv.Tx) error {
		v, err := tx.Get(key)
		if err != nil {
			return err
		}
		t, err = decodeTarget(v)
		return err
	})
	if errors.Is(err, kv.ErrNotFound) || errors.Is(err, errTargetRecord) {
		return outcomeSkipped
	}
	if err != nil {
		log.Warn("notification: read target", "err", err)
		s.coalesce.release(name)
		return outcomeRetry
	}
	p := platform(t.target)
	prov := s.providers[p]
	if prov == nil {
		return s.deadLetter(ctx, user, device, p, attempt, "no provider for platform")
	}
	began := s.cfg.Now()
	err = prov.Push(ctx, t.target)
	s.count(p, err, s.cfg.Now().Sub(began))
	var pe *PushError
	switch {
	case err == nil:
		return outcomePushed
	case errors.Is(err, ErrTargetGone):
		log.Info("notification: push target gone; deleted", "platform", p.String())
		if err := s.deleteTarget(ctx, key, t); err != nil {
			log.Warn("notification: delete gone target", "err", err)
		}
		return outcomeGone
	case errors.As(err, &pe) && pe.Retryable && attempt < s.cfg.MaxAttempts:
		log.Info("notification: push failed; will retry", "platform", p.String(), "attempt", attempt, "status", pe.Status)
		s.coalesce.release(name)
		return outcomeRetry
	default:
		reason := "push failed"
		if errors.As(err, &pe) {
			reason = pe.Error()
		}
		return s.deadLetter(ctx, user, device, p, attempt, reason)
	}
}

// online reports whether the device holds a key in the presence bucket: it is connected
// and will read its inbox without being woken.
func (s *Server) online(ctx context.Context, user string, device uint32) bool {
	if s.cfg.Presence == nil {
		return false
	}
	tok, err := bus.EscapeToken(user)
	if err != nil {
		return false
	}
	_, err = s.cfg.Presence.Get(ctx, tok+"."+strconv.FormatUint(uint64(device), 10))
	return err == nil
}

// deleteTarget deletes a target the push service reported gone, unless the device has
// registered a new one meanwhile.
func (s *Server) deleteTarget(ctx context.Context, key []byte, gone storedTarget) error {
	want, err := encodeTarget(gone)
	if err != nil {
		return err
	}
	return s.cfg.Store.Update(ctx, func(tx kv.Tx) error {
		v, err := tx.Get(key)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if string(v) != string(want) {
			return nil
		}
		return tx.Delete(key)
	})
}

func (s *Server) deadLetter(ctx context.Context, user string, device uint32, p commonv1.PushPlatform, attempt int, reason string) outcome {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	key, _ := deviceKey(deadPrefix, user, device)
	val := encodeDead(DeadLetter{Platform: p, At: s.cfg.Now(), Attempts: attempt, Reason: reason})
	if err := s.cfg.Store.Update(ctx, func(tx kv.Tx) error { return tx.Put(key, val) }); err != nil {
		s.cfg.Logger.Warn("notification: store dead letter", "err", err)
	}
	s.cfg.Logger.Warn("notification: push failed for good", "platform", p.String(), "attempts", attempt, "reason", reason)
	return outcomeDead
}

// providerName is the metric label of a platform.
func providerName(p commonv1.PushPlatform) string {
	switch p {
	case commonv1.PushPlatform_PUSH_PLATFORM_WEB_PUSH:
		return "webpush"
	case commonv1.PushPlatform_PUSH_PLATFORM_APNS:
		return "apns"
	case commonv1.PushPlatform_PUSH_PLATFORM_FCM:
		return "fcm"
	}
	return "unknown"
}

// pushReason names the outcome of a failed push with a fixed label value: never a token,
// endpoint or the push service's free text.
func pushReason(err error) string {
	var pe *PushError
	switch {
	case errors.Is(err, ErrTargetGone):
		return "GONE"
	case errors.Is(err, errPrivateAddress):
		return "PRIVATE_ADDRESS"
	case !errors.As(err, &pe):
		return "INTERNAL"
	case pe.Status == 0:
		return "NETWORK"
	case pe.Status == 429:
		return "RATE_LIMITED"
	case pe.Status >= 500:
		return "SERVER_ERROR"
	}
	return "REFUSED"
}

func (s *Server) count(p commonv1.PushPlatform, err error, took time.Duration) {
	if s.cfg.Metrics == nil {
		return
	}
	if err == nil {
		s.cfg.Metrics.Sent(providerName(p), took)
		return
	}
	s.cfg.Metrics.Failed(providerName(p), pushReason(err), took)
}
