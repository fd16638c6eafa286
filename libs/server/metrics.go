package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// rpcMetrics records per-method call counts and latencies. Counters and
// observers for registered methods are resolved once at start-up so the hot
// path is a read-only map lookup with no label hashing or allocation.
type rpcMetrics struct {
	handled  *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	streams  *prometheus.GaugeVec
	byMethod map[string]*methodMetrics
}

type methodMetrics struct {
	ok      prometheus.Counter
	latency prometheus.Observer
	open    prometheus.Gauge // streaming methods only
}

func newRPCMetrics(reg prometheus.Registerer) (*rpcMetrics, error) {
	m := &rpcMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "guardyn",
			Subsystem: "grpc_server",
			Name:      "handled_total",
			Help:      "RPCs completed on the server, by full method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "guardyn",
			Subsystem: "grpc_server",
			Name:      "handling_seconds",
			Help:      "Time from the start of an RPC to its end (streams: the whole stream), by full method.",
			Buckets:   []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
		// Reasons are the stable UPPER_SNAKE constants of the services (server.Error),
		// a bounded set, so they may be labels; "" when an error carries none.
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "guardyn",
			Subsystem: "grpc_server",
			Name:      "errors_total",
			Help:      "RPCs that ended with an error, by full method, status code and stable reason.",
		}, []string{"method", "code", "reason"}),
		// Receive streams are the connected devices: one per online device.
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "guardyn",
			Subsystem: "grpc_server",
			Name:      "open_streams",
			Help:      "Streams open now, by full method (Receive: the devices connected).",
		}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{m.handled, m.errors, m.latency, m.streams} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// index pre-resolves the metrics of every method registered on srv. It must
// run before serving starts: byMethod is read without locks afterwards.
func (m *rpcMetrics) index(srv *grpc.Server) {
	m.byMethod = make(map[string]*methodMetrics)
	for svc, info := range srv.GetServiceInfo() {
		for _, meth := range info.Methods {
			full := "/" + svc + "/" + meth.Name
			mm := &methodMetrics{
				ok:      m.handled.WithLabelValues(full, codes.OK.String()),
				latency: m.latency.WithLabelValues(full),
			}
			if meth.IsClientStream || meth.IsServerStream {
				mm.open = m.streams.WithLabelValues(full)
			}
			m.byMethod[full] = mm
		}
	}
}

// observe records the end of a call; reason is the error's stable reason ("" if none).
func (m *rpcMetrics) observe(fullMethod string, code codes.Code, reason string, elapsed time.Duration) {
	mm, known := m.byMethod[fullMethod]
	if !known {
		// Unknown methods end in Unimplemented before reaching handlers; do
		// not let arbitrary method names create unbounded label values.
		fullMethod = "unknown"
		m.handled.WithLabelValues(fullMethod, code.String()).Inc()
		m.errors.WithLabelValues(fullMethod, code.String(), reason).Inc()
		return
	}
	if code == codes.OK {
		mm.ok.Inc()
	} else {
		m.handled.WithLabelValues(fullMethod, code.String()).Inc()
		m.errors.WithLabelValues(fullMethod, code.String(), reason).Inc()
	}
	mm.latency.Observe(elapsed.Seconds())
}

// streamOpened counts an open stream of fullMethod and returns what closes it.
func (m *rpcMetrics) streamOpened(fullMethod string) prometheus.Gauge {
	mm := m.byMethod[fullMethod]
	if mm == nil || mm.open == nil {
		return nil
	}
	mm.open.Inc()
	return mm.open
}
