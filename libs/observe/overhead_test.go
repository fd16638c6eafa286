package observe_test

import (
	"context"
	"slices"
	"testing"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// countingCtx counts the lookups that pass through it on their way down a context chain.
type countingCtx struct {
	context.Context
	lookups *int
}

func (c countingCtx) Value(key any) any {
	*c.lookups++
	return c.Context.Value(key)
}

// appendOnly is a message store whose Append and Delete do nothing.
type appendOnly struct{ msgstore.Store }

func (appendOnly) Append(context.Context, []msgstore.Message) error            { return nil }
func (appendOnly) Delete(context.Context, msgstore.Inbox, []msgstore.ID) error { return nil }

// TestStoreSpanLooksUpCallerContextOnce: a store call inside a traced call walks the
// caller's context once, to find the parent span; the SDK's own lookups of the parent (the
// new span's and the sampler's) stop at the head of the chain. A gRPC stream's context is
// a long chain, walked per message when every call is traced (docs/observability.md,
// "Overhead").
func TestStoreSpanLooksUpCallerContextOnce(t *testing.T) {
	obs, _, _ := tracing(t)
	defer obs.Close(testCtx(t))
	store := obs.Messages(appendOnly{})
	ctx, call := obs.TracerProvider().Tracer("test").Start(testCtx(t), "call")
	defer call.End()
	var lookups int
	if err := store.Append(countingCtx{ctx, &lookups}, nil); err != nil {
		t.Fatal(err)
	}
	if lookups != 1 {
		t.Fatalf("a store span walked the caller's context %d times; want 1", lookups)
	}
}

// TestAckDeletesAreNotSpans: a Delete inside a traced call (an acknowledgement, almost
// always on a Receive stream as long as the connection) is timed but is no child span,
// while an Append in the same call is one.
func TestAckDeletesAreNotSpans(t *testing.T) {
	obs, col, _ := tracing(t)
	store := obs.Messages(appendOnly{})
	ctx, call := obs.TracerProvider().Tracer("test").Start(testCtx(t), "call")
	inbox := msgstore.Inbox{UserID: "u", DeviceID: "1"}
	if err := store.Delete(ctx, inbox, []msgstore.ID{{1}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Append(ctx, nil); err != nil {
		t.Fatal(err)
	}
	call.End()
	if err := obs.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	var children []string
	for _, sp := range col.Spans() {
		if sp.ParentSpanID == call.SpanContext().SpanID().String() {
			children = append(children, sp.Name)
		}
	}
	if !slices.Equal(children, []string{"msgstore.append"}) {
		t.Errorf("child spans %v; want only msgstore.append", children)
	}
	mfs, err := obs.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	timed := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() == "guardyn_store_op_seconds" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "op" {
						timed[l.GetValue()] += m.GetHistogram().GetSampleCount()
					}
				}
			}
		}
	}
	if timed["delete"] != 1 || timed["append"] != 1 {
		t.Errorf("store calls timed %v; want delete 1, append 1", timed)
	}
}
