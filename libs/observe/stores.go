package observe

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/msgstore"
)

// latencyBuckets span a cached read (tens of µs) to a stalled fsync (seconds).
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// storeMetrics times store calls by store and operation.
type storeMetrics struct {
	seconds *prometheus.HistogramVec
	errors  *prometheus.CounterVec
	depth   prometheus.Histogram
}

func newStoreMetrics(reg prometheus.Registerer) (*storeMetrics, error) {
	m := &storeMetrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "guardyn", Subsystem: "store", Name: "op_seconds",
			Help:    "Time a store call took, by store and operation (failed calls included).",
			Buckets: latencyBuckets,
		}, []string{"store", "op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "guardyn", Subsystem: "store", Name: "errors_total",
			Help: "Store calls that failed, by store and operation (a cancelled caller included).",
		}, []string{"store", "op"}),
		depth: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "guardyn", Subsystem: "inbox", Name: "depth",
			Help:    "Undelivered messages in a device's inbox, sampled whenever it is counted (before every send to it).",
			Buckets: []float64{0, 1, 10, 100, 1000, 5000, 10000},
		}),
	}
	for _, c := range []prometheus.Collector{m.seconds, m.errors, m.depth} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// storeOp is one operation of one store, its metrics resolved once.
type storeOp struct {
	span    string // "": timed only, never a span
	attrs   []attribute.KeyValue
	seconds prometheus.Observer
	errors  prometheus.Counter
}

func (m *storeMetrics) op(store, op string) *storeOp {
	return &storeOp{
		span:    store + "." + op,
		attrs:   []attribute.KeyValue{attribute.String(AttrPrefix+"store", store)},
		seconds: m.seconds.WithLabelValues(store, op),
		errors:  m.errors.WithLabelValues(store, op),
	}
}

// begin starts timing a call, with a child span when ctx is traced.
func (o *storeOp) begin(ctx context.Context) (context.Context, trace.Span, time.Time) {
	if o.span == "" {
		return ctx, nil, time.Now()
	}
	ctx, span := startChild(ctx, o.span, trace.SpanKindInternal, o.attrs...)
	return ctx, span, time.Now()
}

func (o *storeOp) end(span trace.Span, start time.Time, err error) {
	o.seconds.Observe(time.Since(start).Seconds())
	if err != nil {
		o.errors.Inc()
	}
	if span != nil {
		if err != nil {
			span.SetStatus(codes.Error, "")
		}
		span.End()
	}
}

// KV wraps a kv.Store so that every transaction is timed under store name (one of a
// few fixed names, e.g. "auth" or "groups": it is a metric label) and traced when the
// caller is.
func (o *Observer) KV(name string, s kv.Store) kv.Store {
	return &kvStore{Store: s,
		update: o.stores.op(name, "update"),
		view:   o.stores.op(name, "view"),
	}
}

type kvStore struct {
	kv.Store
	update, view *storeOp
}

func (s *kvStore) Update(ctx context.Context, fn func(kv.Tx) error) (err error) {
	ctx, span, start := s.update.begin(ctx)
	defer func() { s.update.end(span, start, err) }()
	return s.Store.Update(ctx, fn)
}

func (s *kvStore) View(ctx context.Context, fn func(kv.Tx) error) (err error) {
	ctx, span, start := s.view.begin(ctx)
	defer func() { s.view.end(span, start, err) }()
	return s.Store.View(ctx, fn)
}

// Messages wraps a msgstore.Store so that every call is timed (store "msgstore") and,
// but for Count and Delete, traced when the caller is; every Count feeds the inbox depth
// histogram.
func (o *Observer) Messages(s msgstore.Store) msgstore.Store {
	op := func(name string) *storeOp { return o.stores.op("msgstore", name) }
	// Count runs once per envelope of every send and costs a map lookup: a span for each
	// would cost more than the call (docs/observability.md, "Overhead"). It is timed only.
	count := op("count")
	count.span = ""
	// Delete runs once per acknowledgement, almost always on a device's Receive stream,
	// whose span lives as long as the connection: a child span per ack was a quarter of
	// the spans of a traced message and belongs to no send's trace. It is timed only.
	del := op("delete")
	del.span = ""
	return &msgStore{Store: s, depth: o.stores.depth,
		append: op("append"), read: op("read"), readIDs: op("read_ids"), get: op("get"), delete: del,
		count: count, deleteInbox: op("delete_inbox"),
	}
}

type msgStore struct {
	msgstore.Store
	depth                                                  prometheus.Observer
	append, read, readIDs, get, delete, count, deleteInbox *storeOp
}

func (s *msgStore) Append(ctx context.Context, msgs []msgstore.Message) (err error) {
	ctx, span, start := s.append.begin(ctx)
	if span != nil {
		span.SetAttributes(attribute.Int(AttrPrefix+"messages", len(msgs)))
	}
	defer func() { s.append.end(span, start, err) }()
	return s.Store.Append(ctx, msgs)
}

func (s *msgStore) Read(ctx context.Context, inbox msgstore.Inbox, after msgstore.Cursor, limit, maxBytes int) (_ []msgstore.Message, err error) {
	ctx, span, start := s.read.begin(ctx)
	defer func() { s.read.end(span, start, err) }()
	return s.Store.Read(ctx, inbox, after, limit, maxBytes)
}

func (s *msgStore) ReadIDs(ctx context.Context, inbox msgstore.Inbox, after msgstore.Cursor, limit int) (_ []msgstore.ID, _ msgstore.Cursor, err error) {
	ctx, span, start := s.readIDs.begin(ctx)
	defer func() { s.readIDs.end(span, start, err) }()
	return s.Store.ReadIDs(ctx, inbox, after, limit)
}

func (s *msgStore) Get(ctx context.Context, inbox msgstore.Inbox, id msgstore.ID) (_ msgstore.Message, err error) {
	ctx, span, start := s.get.begin(ctx)
	defer func() { s.get.end(span, start, err) }()
	return s.Store.Get(ctx, inbox, id)
}

func (s *msgStore) Delete(ctx context.Context, inbox msgstore.Inbox, ids []msgstore.ID) (err error) {
	ctx, span, start := s.delete.begin(ctx)
	defer func() { s.delete.end(span, start, err) }()
	return s.Store.Delete(ctx, inbox, ids)
}

func (s *msgStore) Count(ctx context.Context, inbox msgstore.Inbox) (n int, err error) {
	ctx, span, start := s.count.begin(ctx)
	defer func() {
		s.count.end(span, start, err)
		if err == nil {
			s.depth.Observe(float64(n))
		}
	}()
	return s.Store.Count(ctx, inbox)
}

func (s *msgStore) DeleteInbox(ctx context.Context, inbox msgstore.Inbox) (err error) {
	ctx, span, start := s.deleteInbox.begin(ctx)
	defer func() { s.deleteInbox.end(span, start, err) }()
	return s.Store.DeleteInbox(ctx, inbox)
}
