// Package observetest runs an OTLP trace collector in process, for tests that check what
// a Guardyn process exports and for load runs that need a collector to export to.
package observetest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"sync"

	collectorv1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
)

// Collector is an OTLP/gRPC trace collector on loopback that keeps every span it
// receives (or only counts them, when started with keep false).
type Collector struct {
	collectorv1.UnimplementedTraceServiceServer
	lis  net.Listener
	srv  *grpc.Server
	keep bool

	mu      sync.Mutex
	spans   []Span
	count   int
	updated chan struct{} // closed and replaced on every export
}

// Span is one received span, flattened: its service, trace and parent ids, name, and
// every attribute (of the span, its events, links and resource) as text.
type Span struct {
	Service, Name      string
	TraceID, SpanID    string
	ParentSpanID       string
	Attributes         map[string]string
	EventAndLinkAttrs  []string
	ResourceAttributes map[string]string
	StatusMessage      string
	LinkedTraceIDs     []string
}

// Start listens on a free loopback port and serves until Close.
func Start(keep bool) (*Collector, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("otlp collector: %w", err)
	}
	c := &Collector{lis: lis, srv: grpc.NewServer(), keep: keep, updated: make(chan struct{})}
	collectorv1.RegisterTraceServiceServer(c.srv, c)
	go c.srv.Serve(lis)
	return c, nil
}

// Addr is the collector's host:port, for -otlp-endpoint (plaintext: -otlp-insecure).
func (c *Collector) Addr() string { return c.lis.Addr().String() }

// Close stops the collector.
func (c *Collector) Close() { c.srv.Stop() }

// Export implements the OTLP trace service.
func (c *Collector) Export(_ context.Context, req *collectorv1.ExportTraceServiceRequest) (*collectorv1.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.count++
				if !c.keep {
					continue
				}
				sp := Span{
					Service: res["service.name"], Name: s.GetName(),
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					ParentSpanID:       hex.EncodeToString(s.GetParentSpanId()),
					Attributes:         attrs(s.GetAttributes()),
					ResourceAttributes: res,
					StatusMessage:      s.GetStatus().GetMessage(),
				}
				for _, e := range s.GetEvents() {
					for k, v := range attrs(e.GetAttributes()) {
						sp.EventAndLinkAttrs = append(sp.EventAndLinkAttrs, e.GetName()+" "+k+"="+v)
					}
				}
				for _, l := range s.GetLinks() {
					sp.LinkedTraceIDs = append(sp.LinkedTraceIDs, hex.EncodeToString(l.GetTraceId()))
					for k, v := range attrs(l.GetAttributes()) {
						sp.EventAndLinkAttrs = append(sp.EventAndLinkAttrs, "link "+k+"="+v)
					}
				}
				c.spans = append(c.spans, sp)
			}
		}
	}
	close(c.updated)
	c.updated = make(chan struct{})
	return &collectorv1.ExportTraceServiceResponse{}, nil
}

func attrs(kvs []*commonv1.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return m
}

func anyValue(v *commonv1.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonv1.AnyValue_StringValue:
		return x.StringValue
	case *commonv1.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	default:
		return fmt.Sprint(v.GetValue())
	}
}

// Spans returns the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Count is the number of spans received so far.
func (c *Collector) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// Wait waits until done reports true for the spans received, or ctx ends.
func (c *Collector) Wait(ctx context.Context, done func([]Span) bool) ([]Span, error) {
	for {
		c.mu.Lock()
		spans, updated := append([]Span(nil), c.spans...), c.updated
		c.mu.Unlock()
		if done(spans) {
			return spans, nil
		}
		select {
		case <-updated:
		case <-ctx.Done():
			return spans, ctx.Err()
		}
	}
}
