package observe

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// busMetrics times the JetStream traffic of libs/bus; the Observer implements the bus's
// Observer interface with it.
type busMetrics struct {
	publish  *prometheus.HistogramVec
	failures *prometheus.CounterVec
	lag      *prometheus.HistogramVec
	handle   *prometheus.HistogramVec
	consumed *prometheus.CounterVec
}

func newBusMetrics(reg prometheus.Registerer) (*busMetrics, error) {
	m := &busMetrics{
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "guardyn", Subsystem: "bus", Name: "publish_seconds",
			Help:    "Time from a JetStream publish to the stream's acknowledgement, by stream.",
			Buckets: latencyBuckets,
		}, []string{"stream"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "guardyn", Subsystem: "bus", Name: "publish_failures_total",
			Help: "JetStream publishes that were not acknowledged, by subject.",
		}, []string{"subject"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "guardyn", Subsystem: "bus", Name: "consume_lag_seconds",
			Help:    "Time from a message's arrival in its stream to the start of its handling, by stream and consumer.",
			Buckets: latencyBuckets,
		}, []string{"stream", "consumer"}),
		handle: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "guardyn", Subsystem: "bus", Name: "handle_seconds",
			Help:    "Time a consumer's handler took for one message, by stream and consumer.",
			Buckets: latencyBuckets,
		}, []string{"stream", "consumer"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "guardyn", Subsystem: "bus", Name: "consumed_total",
			Help: "Messages a consumer handled, by stream, consumer and outcome (acked, retried, malformed).",
		}, []string{"stream", "consumer", "outcome"}),
	}
	for _, c := range []prometheus.Collector{m.publish, m.failures, m.lag, m.handle, m.consumed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Published records a JetStream publish to subject: acknowledged by stream after took,
// or failed when err is set. Part of the bus's Observer interface.
func (o *Observer) Published(subject, stream string, took time.Duration, err error) {
	if err != nil {
		o.bus.failures.WithLabelValues(subject).Inc()
		return
	}
	o.bus.publish.WithLabelValues(stream).Observe(took.Seconds())
}

// Consumed records one message handled by a consumer: lag is its time in the stream
// before handling began, took the handling, outcome "acked", "retried" or "malformed".
// Part of the bus's Observer interface.
func (o *Observer) Consumed(stream, consumer string, lag, took time.Duration, outcome string) {
	if lag >= 0 {
		o.bus.lag.WithLabelValues(stream, consumer).Observe(lag.Seconds())
	}
	o.bus.handle.WithLabelValues(stream, consumer).Observe(took.Seconds())
	o.bus.consumed.WithLabelValues(stream, consumer, outcome).Inc()
}
