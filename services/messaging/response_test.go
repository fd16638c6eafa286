package messaging

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/msgstore"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// TestResponsesStayWithinTheBudget packs deliveries of random sizes, some larger than
// the budget, as the stream does and checks every encoded response.
func TestResponsesStayWithinTheBudget(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var sent []*messagingv1.Delivery
	var r response
	flush := func() {
		if len(r.deliveries) == 0 {
			return
		}
		resp := &messagingv1.ReceiveResponse{Deliveries: r.deliveries}
		size := proto.Size(resp)
		if size != r.size {
			t.Fatalf("response of %d deliveries counted %d bytes, encodes to %d", len(r.deliveries), r.size, size)
		}
		if len(r.deliveries) > maxBatch || len(r.deliveries) > 1 && size > responseBudget {
			t.Fatalf("response of %d deliveries and %d bytes; the budget is %d deliveries and %d bytes", len(r.deliveries), size, maxBatch, responseBudget)
		}
		sent = append(sent, r.deliveries...)
		r = response{}
	}
	var all []*messagingv1.Delivery
	for i := range 3000 {
		var n int
		switch rng.IntN(10) {
		case 0:
			n = responseBudget + rng.IntN(1<<20-responseBudget)
		case 1, 2:
			n = rng.IntN(responseBudget)
		default:
			n = rng.IntN(512)
		}
		d := &messagingv1.Delivery{MessageId: bytes.Repeat([]byte{byte(i)}, 16), Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE, Payload: make([]byte, n)}
		all = append(all, d)
		size := deliverySize(d)
		if !r.fits(size) {
			flush()
		}
		r.add(d, size)
	}
	flush()
	if len(sent) != len(all) {
		t.Fatalf("sent %d of %d deliveries", len(sent), len(all))
	}
	for i := range sent {
		if sent[i] != all[i] {
			t.Fatalf("delivery %d out of order", i)
		}
	}
}

// TestLargestResponseFitsTheClientLimit builds the largest delivery the store can hold,
// alone in a response that also completes the backlog, and checks it against the receive
// limit clients set; a full response of small deliveries must fit too.
func TestLargestResponseFitsTheClientLimit(t *testing.T) {
	d := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME, GroupId: make([]byte, 64), Epoch: math.MaxUint64}
	d.Payload = make([]byte, msgstore.MaxBodySize-proto.Size(d)-4)
	for proto.Size(d) < msgstore.MaxBodySize {
		d.Payload = append(d.Payload, 0)
	}
	body, err := proto.Marshal(d)
	if err != nil || len(body) != msgstore.MaxBodySize {
		t.Fatalf("stored delivery of %d bytes, %v; want %d", len(body), err, msgstore.MaxBodySize)
	}
	stored, err := storedDelivery(msgstore.Message{ID: msgstore.ID(bytes.Repeat([]byte{0xff}, 16)), Kind: msgstore.Kind(d.GetKind()), Body: body,
		Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	largest := proto.Size(&messagingv1.ReceiveResponse{Deliveries: []*messagingv1.Delivery{stored}, BacklogComplete: true})
	if largest > messagingv1.MaxReceiveResponseSize {
		t.Fatalf("the largest delivery makes a response of %d bytes, over the client limit of %d", largest, messagingv1.MaxReceiveResponseSize)
	}
	if full := responseBudget + proto.Size(&messagingv1.ReceiveResponse{BacklogComplete: true}); full > messagingv1.MaxReceiveResponseSize {
		t.Fatalf("a full response may have %d bytes, over the client limit of %d", full, messagingv1.MaxReceiveResponseSize)
	}
}
