package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ErrUnboundedStream reports a stream configuration without a byte limit.
var ErrUnboundedStream = errors.New("stream has no byte limit")

// EnsureStream creates the stream or updates it to cfg; call it at start-up
// from every process that publishes to or consumes from it. Every stream must
// be bounded by bytes (cfg.MaxBytes > 0): a count or age limit alone lets a
// publisher of large or many messages fill the disk. A stream without its own
// cfg.Replicas gets the Bus's (ClusterOptions.Replicas; 1 embedded).
func (b *Bus) EnsureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	if cfg.MaxBytes <= 0 {
		return fmt.Errorf("ensure stream %s: %w", cfg.Name, ErrUnboundedStream)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = b.Replicas()
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return nil
}

// AuthEventsMaxBytes bounds StreamAuthEvents. An event takes about 100 bytes
// stored, so the bound holds about two million of them; when it is reached the
// oldest go first, which consumers have long acknowledged.
const AuthEventsMaxBytes = 256 << 20

// EnsureAuthEvents creates StreamAuthEvents: file-backed, auth events kept
// for 30 days (and at most AuthEventsMaxBytes) so a consumer that was down
// for a while still sees every device removal.
func (b *Bus) EnsureAuthEvents(ctx context.Context) error {
	return b.EnsureStream(ctx, jetstream.StreamConfig{
		Name:      StreamAuthEvents,
		Subjects:  []string{SubjectAuthEvents},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		MaxAge:    30 * 24 * time.Hour,
		MaxBytes:  AuthEventsMaxBytes,
		Discard:   jetstream.DiscardOld,
	})
}

// Publish stores data on a JetStream subject and returns once the stream
// has acknowledged it. With an Observer, the message carries the trace context of ctx
// in its headers and the publish is timed.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	msg := &nats.Msg{Subject: subject, Data: data}
	var span trace.Span
	if b.obs != nil {
		ctx, span = b.startSpan(ctx, "bus.publish", trace.SpanKindProducer)
		if span != nil {
			msg.Header = nats.Header{}
			traceContext.Inject(ctx, propagation.HeaderCarrier(msg.Header))
		}
	}
	start := time.Now()
	ack, err := b.js.PublishMsg(ctx, msg)
	if b.obs != nil {
		stream := ""
		if ack != nil {
			stream = ack.Stream
		}
		b.obs.Published(subject, stream, time.Since(start), err)
		endSpan(span, err)
	}
	if err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	return nil
}

// ConsumerConfig describes a durable pull consumer.
type ConsumerConfig struct {
	Stream  string
	Durable string // consumer name; the position survives restarts
	// FilterSubject narrows the stream to one subject (wildcards allowed).
	FilterSubject string
	// MaxDeliver bounds redeliveries of a message the handler keeps
	// refusing; 0 means 10, -1 unlimited.
	MaxDeliver int
	// AckWait is how long a message may be processed before redelivery;
	// 0 means 30s.
	AckWait time.Duration
	// RetryDelay is how long a refused message waits before its first
	// redelivery; 0 means 1s. Each further refusal doubles the wait, up to
	// MaxRetryDelay (0: RetryDelay, a fixed delay), so a handler failing for a
	// while is retried ever more rarely instead of spinning.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// OnlyNew makes a consumer created now skip the messages already in the
	// stream (notices that are stale by then); once created, it resumes where
	// it stopped like any durable consumer.
	OnlyNew bool
}

// Backoff is the wait before redelivering a message refused for the n-th
// time (n ≥ 1): base doubled n-1 times, at most limit.
func Backoff(n uint64, base, limit time.Duration) time.Duration {
	d := base
	for i := uint64(1); i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// NakWithBackoff asks for msg to be redelivered after Backoff of its delivery
// count.
func NakWithBackoff(msg jetstream.Msg, base, limit time.Duration) error {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 0 {
		n = md.NumDelivered
	}
	return msg.NakWithDelay(Backoff(n, base, limit))
}

// ackTimeout bounds waiting for the server to confirm an ack; a message whose ack is not
// confirmed in time is redelivered after AckWait, as a lost ack would be.
const ackTimeout = 5 * time.Second

// Consumer is a running durable consumer.
type Consumer struct {
	cc jetstream.ConsumeContext
}

// Stop stops fetching; a message being handled finishes first.
func (c *Consumer) Stop() {
	c.cc.Stop()
	<-c.cc.Closed()
}

// Consume runs a durable pull consumer that decodes each message with
// decode and hands it to handle, one message at a time. handle returns true
// to acknowledge (done, or failed for good) and false to have the message
// redelivered after RetryDelay. A message decode rejects is malformed and
// would fail forever: it is logged and terminated, never redelivered.
// ctx bounds creating the consumer and is passed to handle; the consumer
// runs until Stop.
func Consume[T any](ctx context.Context, b *Bus, cfg ConsumerConfig,
	decode func([]byte) (T, error), handle func(context.Context, T) bool,
) (*Consumer, error) {
	if cfg.Stream == "" || cfg.Durable == "" {
		return nil, errors.New("consumer: Stream and Durable are required")
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 10
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Second
	}
	cfg.MaxRetryDelay = max(cfg.MaxRetryDelay, cfg.RetryDelay)
	deliver := jetstream.DeliverAllPolicy
	if cfg.OnlyNew {
		deliver = jetstream.DeliverNewPolicy
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		FilterSubject: cfg.FilterSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: deliver,
		MaxDeliver:    cfg.MaxDeliver,
		AckWait:       cfg.AckWait,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	log := b.log.With(slog.String("stream", cfg.Stream), slog.String("consumer", cfg.Durable))
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		hctx, done := b.consuming(ctx, cfg, msg)
		v, err := decode(msg.Data())
		if err != nil {
			done("malformed")
			log.ErrorContext(hctx, "malformed message dropped", slog.String("subject", msg.Subject()), slog.Any("error", err))
			if err := msg.TermWithReason("malformed"); err != nil {
				log.Warn("term failed", slog.Any("error", err))
			}
			return
		}
		if handle(hctx, v) {
			done("acked")
			// DoubleAck waits until the server has applied the ack. A plain Ack is
			// queued inside the server even after a flush, so a consumer stopped
			// and its bus closed right after (a shutdown) could get every message it
			// had finished again on the next start.
			actx, cancel := context.WithTimeout(context.Background(), ackTimeout)
			err := msg.DoubleAck(actx)
			cancel()
			if err != nil {
				log.Warn("ack failed; message will be redelivered", slog.Any("error", err))
			}
			return
		}
		done("retried")
		if err := NakWithBackoff(msg, cfg.RetryDelay, cfg.MaxRetryDelay); err != nil {
			log.Warn("nak failed; message will be redelivered after ack wait", slog.Any("error", err))
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn("consume", slog.Any("error", err))
	}))
	if err != nil {
		return nil, fmt.Errorf("consume %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	return &Consumer{cc: cc}, nil
}
