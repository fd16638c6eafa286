// Package observe is what every Guardyn process uses to be seen by its operators:
// Prometheus metrics, log/slog JSON logs that carry trace ids, and OpenTelemetry traces
// exported over OTLP when an endpoint is configured. One [Observer] per process holds
// all three; nothing here is global.
//
// A service plugs in at four places, none of them in its handlers. Its main builds one
// Observer from its flags ([config.Common] has -log-level, -otlp-endpoint,
// -otlp-insecure and -trace-ratio) and closes it last:
//
//	obs, err := observe.New(ctx, opts.Observe("presence", os.Stderr))
//	if err != nil {
//		return err
//	}
//	defer obs.Close(context.Background())
//
// and then:
//
//  1. it logs with obs.Logger() (server.Config.Observer does that for the server);
//
//  2. it passes the Observer to libs/server (server.Config.Observer): the server then
//     logs with obs.Logger(), serves obs.Registry() on /metrics, counts every RPC by
//     method, code and reason, times it, gauges open streams, and traces every call;
//
//  3. it wraps its stores before handing them to the service: obs.KV("presence", store),
//     obs.Messages(inboxes), so every store call is timed (and, inside a traced call,
//     a child span);
//
//  4. it hands the Observer to the bus (b.Observe(obs)), so JetStream publishes carry
//     the trace context in NATS headers and every bus.Consume handler runs in a span
//     that continues the publisher's trace, with publish latency, consume lag and
//     handling time measured. Code that publishes on the NATS connection itself uses
//     [InjectHeader] and [ExtractHeader].
//
// Services with metrics of their own register them on obs.Registry() (see [Pushes] for
// the notification service's).
//
// Privacy: nothing a client sent is ever an attribute of a span that leaves the process.
// Exported spans keep only the attributes in an allow-list (service and method, status
// code, Guardyn's own coarse attributes); otelgrpc's peer and server addresses never
// leave.
// Calls from clients start new traces: a client cannot choose trace ids or force
// sampling. See docs/observability.md.
//
// [config.Common]: https://pkg.go.dev/github.com/guardyn/guardyn/libs/config#Common
package observe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/guardyn/guardyn/libs/buildinfo"
)

// Config chooses where a process's logs and traces go.
type Config struct {
	// Service names the process in traces (service.name), e.g. "messaging".
	Service string
	// LogLevel is the least level logged.
	LogLevel slog.Level
	// LogWriter receives the JSON log lines; nil means os.Stderr.
	LogWriter io.Writer

	// OTLPEndpoint is the host:port of an OTLP/gRPC trace collector; empty turns
	// tracing off (spans cost nothing then).
	OTLPEndpoint string
	// OTLPInsecure sends traces in plaintext, for a collector on loopback or in the
	// same pod; otherwise the exporter uses TLS with the system roots.
	OTLPInsecure bool
	// TraceRatio is the fraction of calls traced, in [0, 1]; 0 means 1 (every call).
	TraceRatio float64
}

// Observer holds one process's logger, metrics registry and tracer provider.
type Observer struct {
	log      *slog.Logger
	registry *prometheus.Registry
	tracer   trace.TracerProvider
	sdk      *sdktrace.TracerProvider // nil when tracing is off

	stores *storeMetrics
	bus    *busMetrics
	pushes *Pushes
}

// New builds the Observer of a process: the registry starts with the Go runtime and
// process collectors and every metric this package defines; the tracer provider
// exports to cfg.OTLPEndpoint in batches, or is a no-op without one. Close flushes it.
func New(ctx context.Context, cfg Config) (*Observer, error) {
	if cfg.TraceRatio < 0 || cfg.TraceRatio > 1 {
		return nil, fmt.Errorf("observe: trace ratio %v: want a fraction in [0, 1]", cfg.TraceRatio)
	}
	w := cfg.LogWriter
	if w == nil {
		w = os.Stderr
	}
	o := &Observer{
		log:      NewLogger(w, cfg.LogLevel),
		registry: prometheus.NewRegistry(),
		tracer:   noop.NewTracerProvider(),
	}
	o.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Metric(), // the release stamp (docs/release.md)
	)
	var err error
	if o.stores, err = newStoreMetrics(o.registry); err != nil {
		return nil, err
	}
	if o.bus, err = newBusMetrics(o.registry); err != nil {
		return nil, err
	}
	if o.pushes, err = NewPushes(o.registry); err != nil {
		return nil, err
	}
	if cfg.OTLPEndpoint == "" {
		return o, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
	if cfg.OTLPInsecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	// The exporter connects lazily and retries; a collector that is down costs
	// dropped spans, never a failed start or a blocked call.
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("observe: otlp exporter for %s: %w", cfg.OTLPEndpoint, err)
	}
	ratio := cfg.TraceRatio
	if ratio == 0 {
		ratio = 1
	}
	service := cfg.Service
	if service == "" {
		service = "guardyn"
	}
	// The resource names the service only: no host name, process arguments or
	// addresses, which the SDK's default detectors would add.
	res := resource.NewSchemaless(attribute.String("service.name", service))
	o.sdk = sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithBatcher(allowListExporter{exp}),
	)
	o.tracer = o.sdk
	return o, nil
}

// Logger is the process's JSON logger; lines logged with a context inside a span carry
// its trace_id and span_id.
func (o *Observer) Logger() *slog.Logger { return o.log }

// Registry is the process's metrics registry, served on the admin port's /metrics.
func (o *Observer) Registry() *prometheus.Registry { return o.registry }

// TracerProvider is the process's tracer provider (a no-op one when tracing is off).
func (o *Observer) TracerProvider() trace.TracerProvider { return o.tracer }

// Tracing reports whether spans are exported.
func (o *Observer) Tracing() bool { return o.sdk != nil }

// Pushes is the push counters of the process, for the notification service.
func (o *Observer) Pushes() *Pushes { return o.pushes }

// Close exports the spans still buffered, waiting at most until ctx ends (5 s when ctx
// has no deadline).
func (o *Observer) Close(ctx context.Context) error {
	if o.sdk == nil {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if err := o.sdk.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("observe: flush traces: %w", err)
	}
	return nil
}
