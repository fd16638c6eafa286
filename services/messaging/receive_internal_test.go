package messaging

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/msgstore"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// countingStore records what the receive path reads from a real embedded store.
type countingStore struct {
	msgstore.Store
	mu        sync.Mutex
	reads     int
	readBytes []int // body bytes each Read returned
	budgets   []int
	idReads   int
}

func (c *countingStore) Read(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit, maxBytes int) ([]msgstore.Message, error) {
	msgs, err := c.Store.Read(ctx, in, after, limit, maxBytes)
	n := 0
	for _, m := range msgs {
		n += len(m.Body)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	c.readBytes = append(c.readBytes, n)
	c.budgets = append(c.budgets, maxBytes)
	return msgs, err
}

func (c *countingStore) ReadIDs(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit int) ([]msgstore.ID, msgstore.Cursor, error) {
	c.mu.Lock()
	c.idReads++
	c.mu.Unlock()
	return c.Store.ReadIDs(ctx, in, after, limit)
}

// sink is the server side of a Receive stream that keeps what is sent; nothing else of
// the stream is used by the code under test.
type sink struct {
	grpc.BidiStreamingServer[messagingv1.ReceiveRequest, messagingv1.ReceiveResponse]
	sent []*messagingv1.ReceiveResponse
}

func (s *sink) Send(r *messagingv1.ReceiveResponse) error {
	s.sent = append(s.sent, proto.Clone(r).(*messagingv1.ReceiveResponse))
	return nil
}

// newTestStream returns a stream of one device over an embedded store in a temp dir with
// n group messages of size bytes queued, and the store's recorder.
func newTestStream(t *testing.T, n, size int) (*liveStream, *countingStore, *sink) {
	t.Helper()
	store, err := msgembedded.Open(filepath.Join(t.TempDir(), msgembedded.DirName), msgembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	in := inboxOf("victim", 1)
	now := time.Now()
	var msgs []msgstore.Message
	for i := range n {
		body, err := proto.Marshal(&messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE, Payload: make([]byte, size), GroupId: []byte("g")})
		if err != nil {
			t.Fatal(err)
		}
		var id msgstore.ID
		id[0], id[1] = byte(i>>8), byte(i)
		msgs = append(msgs, msgstore.Message{Inbox: in, ID: id, Kind: msgstore.Kind(messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE), Body: body, Timestamp: now})
	}
	for len(msgs) > 0 {
		k := min(len(msgs), 32)
		if err := store.Append(context.Background(), msgs[:k]); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[k:]
	}
	rec := &countingStore{Store: store}
	s := &Server{inboxes: rec, window: DefaultWindow, log: slog.New(slog.DiscardHandler)}
	out := &sink{}
	// readEOF keeps the stream from starting an acknowledgement reader on the sink.
	st := &liveStream{s: s, out: out.Send, ctx: context.Background(), inbox: in, lagging: true, readEOF: true, windowBytes: initialWindowBytes}
	return st, rec, out
}

// TestDrainReadsWithinTheBudget drains a backlog of 4 MiB of 64 KiB group messages: every
// inbox read asks for at most readBudget bytes and gets no more than that (issue 18,
// finding 2: a step read up to 1024 bodies), and every response stays within the budget.
func TestDrainReadsWithinTheBudget(t *testing.T) {
	const n, size = 64, 64 << 10
	st, rec, out := newTestStream(t, n, size)
	st.windowBytes = maxWindowBytes // the whole backlog fits: this test is about reads
	if err := st.drain(); err != nil {
		t.Fatal(err)
	}
	for i, got := range rec.readBytes {
		if rec.budgets[i] > readBudget || got > readBudget {
			t.Fatalf("read %d asked for %d bytes and got %d; the budget is %d", i, rec.budgets[i], got, readBudget)
		}
	}
	delivered := 0
	for i, r := range out.sent {
		if size := proto.Size(r); size > messagingv1.MaxReceiveResponseSize || len(r.GetDeliveries()) > 1 && size > responseBudget+8 {
			t.Fatalf("response %d has %d deliveries and %d bytes", i, len(r.GetDeliveries()), size)
		}
		delivered += len(r.GetDeliveries())
	}
	if delivered != n || len(out.sent) == 0 || !out.sent[len(out.sent)-1].GetBacklogComplete() {
		t.Fatalf("drain sent %d of %d deliveries in %d responses, backlog complete at the end: %v", delivered, n, len(out.sent), len(out.sent) > 0 && out.sent[len(out.sent)-1].GetBacklogComplete())
	}
}

// TestResyncReadsIDsOnly resynchronises a stream whose inbox holds 8 MiB: it learns which
// in-flight deliveries are gone from ids alone, without reading a body.
func TestResyncReadsIDsOnly(t *testing.T) {
	st, rec, _ := newTestStream(t, 128, 64<<10)
	var gone msgstore.ID
	gone[0] = 0xff
	present := msgstore.ID{0, 5}
	st.addInflight(present, 100)
	st.addInflight(gone, 200)
	st.lagging = false
	if err := st.resync(); err != nil {
		t.Fatal(err)
	}
	if rec.reads != 0 {
		t.Fatalf("resync read %d pages with bodies (%v bytes)", rec.reads, rec.readBytes)
	}
	if _, ok := st.inflight[present]; !ok || len(st.inflight) != 1 || st.inflightBytes != 100 || !st.lagging || st.cursor != nil {
		t.Fatalf("after resync: in flight %x (%d bytes), lagging %v, cursor %x; want only the id still in the inbox, lagging, from the start", st.inflight, st.inflightBytes, st.lagging, st.cursor)
	}
	if rec.idReads == 0 {
		t.Fatal("resync did not look at the inbox")
	}
}

// sentDeliveries counts the deliveries and their encoded bytes in responses.
func sentDeliveries(rs []*messagingv1.ReceiveResponse) (n, bytes int) {
	for _, r := range rs {
		for _, d := range r.GetDeliveries() {
			n++
			bytes += deliverySize(d)
		}
	}
	return n, bytes
}

// TestUnacknowledgedBytesAreBounded: a stream sends no more than its byte window before
// the device acknowledges, whatever its backlog, and each acknowledgement lets more go
// and grows the window. Before, a device that read a few responses and dropped the stream
// made the server read and send up to 1024 deliveries (8 MiB of this backlog) each time
// (issue 18, the backlog-reconnect attack).
func TestUnacknowledgedBytesAreBounded(t *testing.T) {
	const n, size = 128, 64 << 10
	st, rec, out := newTestStream(t, n, size)
	if err := st.drain(); err != nil {
		t.Fatal(err)
	}
	got, bytes := sentDeliveries(out.sent)
	read := 0
	for _, b := range rec.readBytes {
		read += b
	}
	if got == 0 || bytes > initialWindowBytes || read > initialWindowBytes+readBudget {
		t.Fatalf("before any acknowledgement: sent %d deliveries, %d bytes; read %d bytes; want at least one and at most %d bytes sent, %d read",
			got, bytes, read, initialWindowBytes, initialWindowBytes+readBudget)
	}
	if !st.lagging || st.inflightBytes != bytes {
		t.Fatalf("window full: lagging %v, %d bytes in flight; want lagging, %d", st.lagging, st.inflightBytes, bytes)
	}
	// Acknowledge what came: the window doubles and the next drain fills it.
	var ids [][]byte
	for _, r := range out.sent {
		for _, d := range r.GetDeliveries() {
			ids = append(ids, d.GetMessageId())
		}
	}
	st.acked(ids)
	if st.windowBytes != initialWindowBytes+bytes || st.inflightBytes != 0 {
		t.Fatalf("after acknowledging %d bytes: window %d, in flight %d; want %d, 0", bytes, st.windowBytes, st.inflightBytes, initialWindowBytes+bytes)
	}
	out.sent = nil
	if err := st.drain(); err != nil {
		t.Fatal(err)
	}
	got2, bytes2 := sentDeliveries(out.sent)
	if got2 == 0 || bytes2 > st.windowBytes || bytes2 <= bytes {
		t.Fatalf("after the acknowledgement: sent %d deliveries, %d bytes; want more than %d, within the window of %d", got2, bytes2, bytes, st.windowBytes)
	}
}

// TestLargeDeliveryGoesAlone: a delivery larger than the byte window is sent when nothing
// else is in flight, so a 1 MiB Welcome cannot stall a stream.
func TestLargeDeliveryGoesAlone(t *testing.T) {
	st, _, out := newTestStream(t, 3, 1<<20)
	if err := st.drain(); err != nil {
		t.Fatal(err)
	}
	if got, _ := sentDeliveries(out.sent); got != 1 {
		t.Fatalf("sent %d deliveries of 1 MiB with nothing acknowledged; want exactly 1", got)
	}
}

// debits records what a stream charges.
type debits struct{ keys map[string]int }

func (d *debits) Allow(string) bool       { return true }
func (d *debits) AllowN(string, int) bool { return true }
func (d *debits) Debit(key string, n int) { d.keys[key] += n }

// TestDroppedStreamPaysAtMostAFreshWindow: a stream that ends with 4 MiB unacknowledged
// (its window had grown) charges its device one fresh window, what a stream that
// acknowledges nothing costs the server, not the 4 MiB: a device whose connection drops
// mid-backlog is not held back for a minute. One that acknowledged everything pays
// nothing.
func TestDroppedStreamPaysAtMostAFreshWindow(t *testing.T) {
	st, _, out := newTestStream(t, 64, 64<<10)
	rec := &debits{keys: map[string]int{}}
	st.s.limits = rec
	st.windowBytes = maxWindowBytes
	if err := st.drain(); err != nil {
		t.Fatal(err)
	}
	if _, sent := sentDeliveries(out.sent); sent < 4<<20 {
		t.Fatalf("sent %d bytes, want the whole 4 MiB backlog", sent)
	}
	st.chargeDropped("victim/1")
	if got := rec.keys["redeliver|victim/1"]; got != initialWindowBytes {
		t.Fatalf("charged %d bytes for 4 MiB dropped, want one fresh window of %d", got, initialWindowBytes)
	}
	var ids []msgstore.ID
	for id := range st.inflight {
		ids = append(ids, id)
	}
	if err := st.s.inboxes.Delete(context.Background(), st.inbox, ids); err != nil {
		t.Fatal(err)
	}
	clear(rec.keys)
	st.chargeDropped("victim/1")
	if len(rec.keys) != 0 {
		t.Fatalf("charged %v after every delivery was acknowledged", rec.keys)
	}
}
