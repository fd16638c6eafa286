package observe

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pushes counts the pushes a notification service sends. Label values are fixed names
// chosen by the caller: the provider ("webpush", "apns", "fcm") and a failure's stable
// reason (e.g. "GONE", "RATE_LIMITED", "TIMEOUT"), never an endpoint, token or device.
type Pushes struct {
	sent    *prometheus.CounterVec
	failed  *prometheus.CounterVec
	seconds *prometheus.HistogramVec
}

// NewPushes registers the push metrics on reg. [Observer.Pushes] returns the ones every
// Observer registers; call this only for a registry of your own.
func NewPushes(reg prometheus.Registerer) (*Pushes, error) {
	p := &Pushes{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "guardyn", Subsystem: "push", Name: "sent_total",
			Help: "Pushes the provider accepted, by provider.",
		}, []string{"provider"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "guardyn", Subsystem: "push", Name: "failed_total",
			Help: "Push attempts that failed, by provider and reason.",
		}, []string{"provider", "reason"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "guardyn", Subsystem: "push", Name: "seconds",
			Help:    "Time one push request to the provider took, by provider (failed ones included).",
			Buckets: latencyBuckets,
		}, []string{"provider"}),
	}
	for _, c := range []prometheus.Collector{p.sent, p.failed, p.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Sent records a push the provider accepted after took.
func (p *Pushes) Sent(provider string, took time.Duration) {
	p.sent.WithLabelValues(provider).Inc()
	p.seconds.WithLabelValues(provider).Observe(took.Seconds())
}

// Failed records a failed push attempt that took took, with its stable reason.
func (p *Pushes) Failed(provider, reason string, took time.Duration) {
	p.failed.WithLabelValues(provider, reason).Inc()
	p.seconds.WithLabelValues(provider).Observe(took.Seconds())
}
