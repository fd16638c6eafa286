package messaging

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// A SendStream reads a request before it knows whether the sender may send it: a
// refused 256 KiB send costs the server its transport, decoding and checks as much as
// an accepted one. Under the abuse scenario's inbox jam, one account had the server
// read 12 MiB a second of sends that its byte budget towards the victim then refused.
// sendFlow makes refusals cheap by not reading what would be refused: the stream reads
// ahead at most maxStreamQueuedBytes of unanswered sends, and after an answer refused
// with RATE_LIMITED it reads nothing for a hold that doubles while refusals go on
// (100 ms to 1 s).
// HTTP/2 flow control then stops the sender at the stream's window, so the bytes of a
// sender over its limits wait in its own buffers, not the server's.
type sendFlow struct {
	queued    *semaphore.Weighted // bytes of sends read and not yet answered
	holdUntil atomic.Int64        // Unix ns before which the reader reads nothing
	hold      time.Duration       // the current hold; the answerer's only
}

const (
	// maxStreamQueuedBytes bounds the sends one stream has read and not yet answered:
	// a few of the largest sends, thousands of ordinary ones.
	maxStreamQueuedBytes = 1 << 20
	// firstSendHold and maxSendHold bound the pause after a refusal: about what
	// deliver-bytes takes to admit a 256 KiB send again, doubling to a second.
	firstSendHold = 100 * time.Millisecond
	maxSendHold   = time.Second
)

func newSendFlow() *sendFlow {
	return &sendFlow{queued: semaphore.NewWeighted(maxStreamQueuedBytes)}
}

// queuedSize is what req counts against maxStreamQueuedBytes.
func queuedSize(req *messagingv1.SendStreamRequest) int64 {
	return min(max(int64(sealedBytes(req.GetMessage())), 1), maxStreamQueuedBytes)
}

// waitHold returns when the stream may read again: at once unless a refusal put it on
// hold. It reports false if ctx ended or answering failed meanwhile.
func (f *sendFlow) waitHold(ctx context.Context, failed <-chan struct{}, now time.Time) bool {
	d := time.Duration(f.holdUntil.Load() - now.UnixNano())
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-failed:
		return false
	}
}

// release takes reqs out of the read-ahead.
func (f *sendFlow) release(reqs []queuedSend) {
	for _, r := range reqs {
		f.queued.Release(queuedSize(r.req))
	}
}

// answered accounts a batch that was answered: its bytes leave the read-ahead, and a
// refusal for the sender's rate limits holds the reader (longer each time), while a
// batch without one ends the hold's growth.
func (f *sendFlow) answered(reqs []queuedSend, resps []*messagingv1.SendStreamResponse, now time.Time) {
	f.release(reqs)
	limited := false
	for _, r := range resps {
		if r.GetError().GetReason() == reasonRateLimited {
			limited = true
			break
		}
	}
	if !limited {
		f.hold = 0
		return
	}
	f.hold = min(max(2*f.hold, firstSendHold), maxSendHold)
	f.holdUntil.Store(now.Add(f.hold).UnixNano())
}
