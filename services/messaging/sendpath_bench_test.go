package messaging_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// fakeStream is the server side of a bidirectional stream with no transport behind it:
// the benchmark hands it requests and sees what the server sends, so that what it
// measures is the server's own work per message, not a load generator's or gRPC's. Only
// Context, Recv and Send are implemented: the handlers use nothing else.
type fakeStream[Req, Resp any] struct {
	grpc.ServerStream
	ctx  context.Context
	in   chan *Req
	sent func(*Resp)
}

func (s *fakeStream[Req, Resp]) Context() context.Context { return s.ctx }

func (s *fakeStream[Req, Resp]) Recv() (*Req, error) {
	select {
	case r, ok := <-s.in:
		if !ok {
			return nil, io.EOF
		}
		return r, nil
	case <-s.ctx.Done():
		return nil, status.FromContextError(s.ctx.Err()).Err()
	}
}

func (s *fakeStream[Req, Resp]) Send(r *Resp) error {
	s.sent(r)
	return nil
}

// BenchmarkSendPath measures the messaging server's cost per one-to-one message, sent on
// a SendStream, stored durably in the embedded store, delivered live on the recipient's
// Receive stream and acknowledged on it, with the shapes of docs/perf-throughput.md:
// senders × messages each keeps in flight end to end. The streams have no transport, so
// the figures isolate the server's code from the load generator's (and from gRPC's, which
// loadgen's "server CPU per message" includes): cpu-µs/msg is the process's CPU time per
// message, allocs/op and B/op the server's allocations per message.
func BenchmarkSendPath(b *testing.B) {
	for _, shape := range []struct{ senders, inflight int }{{256, 1}, {64, 4}} {
		b.Run(fmt.Sprintf("%dx%d", shape.senders, shape.inflight), func(b *testing.B) {
			benchSendPath(b, shape.senders, shape.inflight)
		})
	}
}

func benchSendPath(b *testing.B, senders, inflight int) {
	users := make([]string, 2*senders)
	for i := range users {
		users[i] = fmt.Sprintf("%032x", i+1)
	}
	node := startGroupNode(b, users)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handlers sync.WaitGroup
	defer handlers.Wait()
	defer cancel()

	type pairState struct {
		send  *fakeStream[messagingv1.SendStreamRequest, messagingv1.SendStreamResponse]
		recv  *fakeStream[messagingv1.ReceiveRequest, messagingv1.ReceiveResponse]
		slots chan struct{}
	}
	pairs := make([]*pairState, senders)
	for i := range pairs {
		p := &pairState{slots: make(chan struct{}, inflight)}
		pairs[i] = p
		backlog := make(chan struct{})
		var once sync.Once
		p.recv = &fakeStream[messagingv1.ReceiveRequest, messagingv1.ReceiveResponse]{
			ctx: mergeCancel(as(users[senders+i]), ctx), in: make(chan *messagingv1.ReceiveRequest, 1024),
		}
		p.recv.sent = func(r *messagingv1.ReceiveResponse) {
			if r.GetBacklogComplete() {
				once.Do(func() { close(backlog) })
			}
			if len(r.GetDeliveries()) == 0 {
				return
			}
			ids := make([][]byte, len(r.GetDeliveries()))
			for j, d := range r.GetDeliveries() {
				ids[j] = d.GetMessageId()
			}
			p.recv.in <- &messagingv1.ReceiveRequest{AckMessageIds: ids}
			for range ids {
				<-p.slots
			}
		}
		p.send = &fakeStream[messagingv1.SendStreamRequest, messagingv1.SendStreamResponse]{
			ctx: mergeCancel(as(users[i]), ctx), in: make(chan *messagingv1.SendStreamRequest, inflight),
			sent: func(r *messagingv1.SendStreamResponse) {
				if e := r.GetError(); e != nil {
					b.Errorf("send failed: %v", e)
				}
			},
		}
		handlers.Add(2)
		go func() { defer handlers.Done(); node.svc.Receive(p.recv) }()
		go func() { defer handlers.Done(); node.svc.SendStream(p.send) }()
		<-backlog
	}

	var wg sync.WaitGroup
	per := (b.N + senders - 1) / senders
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	for i, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 256)
			for n := range per {
				p.slots <- struct{}{}
				binary.BigEndian.PutUint64(payload, uint64(n))
				cid := make([]byte, 16)
				binary.BigEndian.PutUint64(cid, uint64(i))
				binary.BigEndian.PutUint64(cid[8:], uint64(n))
				p.send.in <- &messagingv1.SendStreamRequest{RequestId: uint64(n), Message: &messagingv1.SendMessageRequest{
					RecipientUserId: users[senders+i], ClientMessageId: cid,
					Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: payload}},
				}}
			}
			// The last messages are delivered and acknowledged when their slots free.
			for range inflight {
				p.slots <- struct{}{}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	msgs := float64(per * senders)
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/msgs, "cpu-µs/msg")
	b.ReportMetric(msgs/elapsed.Seconds(), "msg/s")
}

// mergeCancel returns parent's values, ended when parent or also ends.
func mergeCancel(parent, also context.Context) context.Context {
	ctx, cancel := context.WithCancel(parent)
	context.AfterFunc(also, cancel)
	return ctx
}

// cpuTime is the user and system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
