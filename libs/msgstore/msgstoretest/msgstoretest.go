// Package msgstoretest is the conformance suite and benchmark set every [msgstore.Store]
// backend runs; see docs/storage.md.
package msgstoretest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// Opener opens the store kept under dir with clock as its time source for expiry.
// Opening the same dir again after Close must give back the same data; the suite closes
// every store it opens.
type Opener func(tb testing.TB, dir string, clock func() time.Time) msgstore.Store

// Reclaimer is implemented by backends that reclaim expired messages in the background;
// the suite calls it before checking that Count no longer includes them.
type Reclaimer interface {
	Reclaim(ctx context.Context) error
}

// Clock is a settable time source for tests.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock set to a fixed instant.
func NewClock() *Clock { return &Clock{now: time.Unix(1_750_000_000, 0)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Run runs the conformance suite against the backend open returns.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"AppendRead", testAppendRead},
		{"Paging", testPaging},
		{"ReadBudget", testReadBudget},
		{"ReadIDs", testReadIDs},
		{"Get", testGet},
		{"Idempotent", testIdempotent},
		{"Delete", testDelete},
		{"DeleteInbox", testDeleteInbox},
		{"Expiry", testExpiry},
		{"Reopen", testReopen},
		{"ExpiredAfterReopen", testExpiredAfterReopen},
		{"Copies", testCopies},
		{"BigBody", testBigBody},
		{"BadInput", testBadInput},
		{"Closed", testClosed},
		{"ContextCanceled", testContextCanceled},
		{"ConcurrentAppenders", testConcurrentAppenders},
		{"ConcurrentAppendDelete", testConcurrentAppendDelete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{open: open, dir: t.TempDir(), clock: NewClock()}
			e.store = e.reopen(t, nil)
			tc.fn(t, e)
		})
	}
}

// env is one test's store, its directory and clock.
type env struct {
	open  Opener
	dir   string
	clock *Clock
	store msgstore.Store
}

// reopen closes old, if any, and opens the store again; the new store is closed when
// the test ends.
func (e *env) reopen(tb testing.TB, old msgstore.Store) msgstore.Store {
	tb.Helper()
	if old != nil {
		if err := old.Close(); err != nil {
			tb.Fatalf("close: %v", err)
		}
	}
	s := e.open(tb, e.dir, e.clock.Now)
	tb.Cleanup(func() { s.Close() })
	return s
}

var (
	alice = msgstore.Inbox{UserID: "alice", DeviceID: "phone"}
	// aliceLaptop shares the user id with alice, and bob the device id: inboxes must
	// not mix them up.
	aliceLaptop = msgstore.Inbox{UserID: "alice", DeviceID: "laptop"}
	bob         = msgstore.Inbox{UserID: "bob", DeviceID: "phone"}
)

// idOf returns a distinct message id for n.
func idOf(n int) msgstore.ID {
	var id msgstore.ID
	binary.BigEndian.PutUint64(id[8:], uint64(n))
	id[0] = 0xa5
	return id
}

// msg builds message n of inbox, with a body that names both.
func (e *env) msg(in msgstore.Inbox, n int) msgstore.Message {
	return msgstore.Message{
		Inbox:     in,
		ID:        idOf(n),
		Kind:      msgstore.Kind(n % 7),
		Body:      fmt.Appendf(nil, "ciphertext %d for %s", n, in),
		Timestamp: e.clock.Now(),
		Expiry:    e.clock.Now().Add(24 * time.Hour),
	}
}

func appendOK(tb testing.TB, s msgstore.Store, msgs ...msgstore.Message) {
	tb.Helper()
	if err := s.Append(context.Background(), msgs); err != nil {
		tb.Fatalf("append: %v", err)
	}
}

// readAll pages through inbox with a small limit and returns every message.
func readAll(tb testing.TB, s msgstore.Store, in msgstore.Inbox) []msgstore.Message {
	tb.Helper()
	var all []msgstore.Message
	var cursor msgstore.Cursor
	for {
		page, err := s.Read(context.Background(), in, cursor, 7, msgstore.MaxReadBytes)
		if err != nil {
			tb.Fatalf("read %s: %v", in, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		cursor = page[len(page)-1].Cursor
	}
}

func sameMessage(got, want *msgstore.Message) error {
	if got.Inbox != want.Inbox || got.ID != want.ID || got.Kind != want.Kind || !bytes.Equal(got.Body, want.Body) ||
		!got.Timestamp.Equal(want.Timestamp) || !got.Expiry.Equal(want.Expiry) {
		return fmt.Errorf("got message %s/%x kind %d body %q at %v until %v; want %s/%x kind %d body %q at %v until %v",
			got.Inbox, got.ID, got.Kind, got.Body, got.Timestamp, got.Expiry,
			want.Inbox, want.ID, want.Kind, want.Body, want.Timestamp, want.Expiry)
	}
	return nil
}

// expectInbox checks that inbox holds exactly want, in order.
func expectInbox(tb testing.TB, s msgstore.Store, in msgstore.Inbox, want []msgstore.Message) {
	tb.Helper()
	got := readAll(tb, s, in)
	if len(got) != len(want) {
		tb.Fatalf("inbox %s holds %d messages, want %d", in, len(got), len(want))
	}
	for i := range got {
		if err := sameMessage(&got[i], &want[i]); err != nil {
			tb.Fatalf("inbox %s message %d: %v", in, i, err)
		}
	}
	n, err := s.Count(context.Background(), in)
	if err != nil || n != len(want) {
		tb.Fatalf("count of %s = %d, %v; want %d", in, n, err, len(want))
	}
}

func testAppendRead(t *testing.T, e *env) {
	expectInbox(t, e.store, alice, nil)
	a := []msgstore.Message{e.msg(alice, 1), e.msg(alice, 2), e.msg(alice, 3)}
	a[2].Expiry = time.Time{} // never expires
	a[1].Body = nil
	appendOK(t, e.store, a[0], e.msg(bob, 1))
	appendOK(t, e.store, a[1:]...)
	l := e.msg(aliceLaptop, 9)
	appendOK(t, e.store, l)
	expectInbox(t, e.store, alice, a)
	expectInbox(t, e.store, bob, []msgstore.Message{e.msg(bob, 1)})
	expectInbox(t, e.store, aliceLaptop, []msgstore.Message{l})
	if err := e.store.Append(context.Background(), nil); err != nil {
		t.Fatalf("empty append: %v", err)
	}
}

func testPaging(t *testing.T, e *env) {
	var want []msgstore.Message
	for i := range 25 {
		m := e.msg(alice, 100-i) // ids descending: order must follow appends, not ids
		want = append(want, m)
		appendOK(t, e.store, m)
	}
	page, err := e.store.Read(context.Background(), alice, nil, 10, msgstore.MaxReadBytes)
	if err != nil || len(page) != 10 {
		t.Fatalf("first page: %d messages, %v", len(page), err)
	}
	page, err = e.store.Read(context.Background(), alice, page[9].Cursor, 10, msgstore.MaxReadBytes)
	if err != nil || len(page) != 10 || page[0].ID != want[10].ID {
		t.Fatalf("second page: %d messages, %v", len(page), err)
	}
	// Re-reading from the same cursor gives the same page.
	again, err := e.store.Read(context.Background(), alice, page[4].Cursor, 1, msgstore.MaxReadBytes)
	if err != nil || len(again) != 1 || again[0].ID != want[15].ID {
		t.Fatalf("read after cursor 14: %v, %v", again, err)
	}
	expectInbox(t, e.store, alice, want)
	last := readAll(t, e.store, alice)[24].Cursor
	if page, err := e.store.Read(context.Background(), alice, last, 10, msgstore.MaxReadBytes); err != nil || len(page) != 0 {
		t.Fatalf("read after the last cursor: %d messages, %v", len(page), err)
	}
	// New messages come after every older cursor.
	appendOK(t, e.store, e.msg(alice, 1000))
	if page, err := e.store.Read(context.Background(), alice, last, 10, msgstore.MaxReadBytes); err != nil || len(page) != 1 || page[0].ID != idOf(1000) {
		t.Fatalf("read of a new message after the last cursor: %v, %v", page, err)
	}
}

// testReadBudget checks that Read stays within its byte budget, returns a message larger
// than the budget alone, counts at most ReadOverhead per message besides the body, and
// that paging with a small budget still reaches every message in order.
func testReadBudget(t *testing.T, e *env) {
	ctx := context.Background()
	const size = 10 << 10
	sizes := []int{size, size, size, 3 * size, size, 1, msgstore.MaxBodySize, size, 0, size}
	var want []msgstore.Message
	for i, n := range sizes {
		m := e.msg(alice, i)
		m.Body = bytes.Repeat([]byte{byte(i)}, n)
		want = append(want, m)
		appendOK(t, e.store, m)
	}
	bodies := func(page []msgstore.Message) int {
		total := 0
		for _, m := range page {
			total += len(m.Body)
		}
		return total
	}
	// Three bodies and their overhead fit; a fourth does not.
	budget := 3*(size+msgstore.ReadOverhead) + size/2
	page, err := e.store.Read(ctx, alice, nil, 100, budget)
	if err != nil || len(page) != 3 {
		t.Fatalf("read with a budget of 3.5 bodies: %d messages, %v; want 3", len(page), err)
	}
	// A message larger than the budget comes alone, and nothing after it.
	page, err = e.store.Read(ctx, alice, page[2].Cursor, 100, budget)
	if err != nil || len(page) != 1 || page[0].ID != want[3].ID || len(page[0].Body) != 3*size {
		t.Fatalf("read of a message larger than the budget: %d messages, %v; want it alone", len(page), err)
	}
	for _, budget := range []int{1, 100, size, 2*size + 1, 5 * size, msgstore.MaxBodySize, msgstore.MaxReadBytes} {
		var got []msgstore.Message
		var cursor msgstore.Cursor
		for {
			page, err := e.store.Read(ctx, alice, cursor, 100, budget)
			if err != nil {
				t.Fatalf("budget %d: %v", budget, err)
			}
			if len(page) == 0 {
				break
			}
			if len(page) > 1 && bodies(page) > budget {
				t.Fatalf("budget %d: a page of %d messages holds %d body bytes", budget, len(page), bodies(page))
			}
			got = append(got, page...)
			cursor = page[len(page)-1].Cursor
		}
		if len(got) != len(want) {
			t.Fatalf("budget %d: paging read %d of %d messages", budget, len(got), len(want))
		}
		for i := range got {
			if err := sameMessage(&got[i], &want[i]); err != nil {
				t.Fatalf("budget %d: message %d: %v", budget, i, err)
			}
		}
	}
	e.store = e.reopen(t, e.store)
	if page, err := e.store.Read(ctx, alice, nil, 100, 1); err != nil || len(page) != 1 || page[0].ID != want[0].ID {
		t.Fatalf("read with a budget of one byte after reopen: %d messages, %v; want the first alone", len(page), err)
	}
}

// testReadIDs checks that ReadIDs lists what Read would return, page by page.
func testReadIDs(t *testing.T, e *env) {
	ctx := context.Background()
	var want []msgstore.ID
	for i := range 30 {
		m := e.msg(alice, 100-i)
		if i == 5 {
			m.Body = make([]byte, msgstore.MaxBodySize)
		}
		appendOK(t, e.store, m)
		want = append(want, m.ID)
	}
	appendOK(t, e.store, e.msg(bob, 1))
	deleteOK(t, e.store, alice, 100, 90)
	want = append(want[1:10], want[11:]...)
	ids, cursor, err := e.store.ReadIDs(ctx, msgstore.Inbox{UserID: "nobody", DeviceID: "x"}, nil, 10)
	if err != nil || len(ids) != 0 || len(cursor) != 0 {
		t.Fatalf("ids of an empty inbox: %x, cursor %x, %v", ids, cursor, err)
	}
	var got []msgstore.ID
	cursor = nil
	for {
		ids, next, err := e.store.ReadIDs(ctx, alice, cursor, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > 4 {
			t.Fatalf("%d ids for a limit of 4", len(ids))
		}
		if len(ids) == 0 {
			if !bytes.Equal(next, cursor) {
				t.Fatalf("an empty page moved the cursor from %x to %x", cursor, next)
			}
			break
		}
		// The cursor ReadIDs returns is the one Read gives the last of them.
		page, err := e.store.Read(ctx, alice, cursor, len(ids), msgstore.MaxReadBytes)
		if err != nil || len(page) != len(ids) || page[len(page)-1].ID != ids[len(ids)-1] || !bytes.Equal(page[len(page)-1].Cursor, next) {
			t.Fatalf("Read after cursor %x disagrees with ReadIDs: %d messages, %v", cursor, len(page), err)
		}
		got = append(got, ids...)
		cursor = next
	}
	if len(got) != len(want) {
		t.Fatalf("ReadIDs listed %d ids, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("id %d = %x, want %x", i, got[i], want[i])
		}
	}
	// Expired messages are not listed.
	e.clock.Advance(48 * time.Hour)
	if ids, _, err := e.store.ReadIDs(ctx, alice, nil, 10); err != nil || len(ids) != 0 {
		t.Fatalf("after every expiry: %d ids, %v", len(ids), err)
	}
}

// testGet checks that Get finds a message by id in its own inbox only, until it is
// deleted or expires, and across a reopen.
func testGet(t *testing.T, e *env) {
	ctx := context.Background()
	big := e.msg(alice, 2)
	big.Body = make([]byte, msgstore.MaxBodySize)
	short := e.msg(alice, 3)
	short.Expiry = e.clock.Now().Add(time.Minute)
	appendOK(t, e.store, e.msg(alice, 1), big, short, e.msg(bob, 4))
	get := func(in msgstore.Inbox, n int) (msgstore.Message, error) {
		return e.store.Get(ctx, in, idOf(n))
	}
	for _, want := range []msgstore.Message{e.msg(alice, 1), big, short, e.msg(bob, 4)} {
		got, err := get(want.Inbox, int(binary.BigEndian.Uint64(want.ID[8:])))
		if err != nil {
			t.Fatalf("get %s/%x: %v", want.Inbox, want.ID, err)
		}
		if err := sameMessage(&got, &want); err != nil {
			t.Fatal(err)
		}
	}
	for name, miss := range map[string]struct {
		in msgstore.Inbox
		n  int
	}{"never stored": {alice, 9}, "other inbox": {bob, 1}, "other device": {aliceLaptop, 1}, "empty inbox": {msgstore.Inbox{UserID: "nobody", DeviceID: "x"}, 1}} {
		if _, err := get(miss.in, miss.n); !errors.Is(err, msgstore.ErrNotFound) {
			t.Errorf("get, %s: %v, want msgstore.ErrNotFound", name, err)
		}
	}
	deleteOK(t, e.store, alice, 1)
	if _, err := get(alice, 1); !errors.Is(err, msgstore.ErrNotFound) {
		t.Fatalf("get of a deleted message: %v, want msgstore.ErrNotFound", err)
	}
	e.clock.Advance(time.Hour)
	if _, err := get(alice, 3); !errors.Is(err, msgstore.ErrNotFound) {
		t.Fatalf("get of an expired message: %v, want msgstore.ErrNotFound", err)
	}
	e.store = e.reopen(t, e.store)
	if got, err := get(alice, 2); err != nil || sameMessage(&got, &big) != nil {
		t.Fatalf("get after reopen: %v", err)
	}
	if _, err := get(alice, 1); !errors.Is(err, msgstore.ErrNotFound) {
		t.Fatalf("get of a deleted message after reopen: %v", err)
	}
	if _, err := e.store.Get(ctx, msgstore.Inbox{UserID: "alice"}, idOf(1)); !errors.Is(err, msgstore.ErrInvalid) {
		t.Fatalf("get in a bad inbox: %v, want msgstore.ErrInvalid", err)
	}
}

func testIdempotent(t *testing.T, e *env) {
	first := e.msg(alice, 1)
	retry := first
	retry.Body = []byte("a different body that must not replace the first")
	appendOK(t, e.store, first)
	appendOK(t, e.store, retry)
	appendOK(t, e.store, e.msg(alice, 2), e.msg(alice, 2), retry)
	// The same id in another inbox is another message.
	appendOK(t, e.store, e.msg(bob, 1))
	expectInbox(t, e.store, alice, []msgstore.Message{first, e.msg(alice, 2)})
	expectInbox(t, e.store, bob, []msgstore.Message{e.msg(bob, 1)})

	e.store = e.reopen(t, e.store)
	appendOK(t, e.store, retry)
	expectInbox(t, e.store, alice, []msgstore.Message{first, e.msg(alice, 2)})
}

func deleteOK(tb testing.TB, s msgstore.Store, in msgstore.Inbox, ns ...int) {
	tb.Helper()
	ids := make([]msgstore.ID, len(ns))
	for i, n := range ns {
		ids[i] = idOf(n)
	}
	if err := s.Delete(context.Background(), in, ids); err != nil {
		tb.Fatalf("delete: %v", err)
	}
}

func testDelete(t *testing.T, e *env) {
	var all []msgstore.Message
	for i := range 10 {
		all = append(all, e.msg(alice, i))
	}
	appendOK(t, e.store, all...)
	appendOK(t, e.store, e.msg(bob, 3))
	deleteOK(t, e.store, alice, 3, 5, 777)
	deleteOK(t, e.store, alice, 3)
	deleteOK(t, e.store, msgstore.Inbox{UserID: "nobody", DeviceID: "x"}, 1)
	want := append(append(append([]msgstore.Message{}, all[:3]...), all[4]), all[6:]...)
	expectInbox(t, e.store, alice, want)
	expectInbox(t, e.store, bob, []msgstore.Message{e.msg(bob, 3)})

	deleteOK(t, e.store, alice, 0, 1, 2, 4, 6, 7, 8, 9)
	expectInbox(t, e.store, alice, nil)
	// A fresh message after everything was acknowledged.
	appendOK(t, e.store, e.msg(alice, 50))
	expectInbox(t, e.store, alice, []msgstore.Message{e.msg(alice, 50)})
}

func testDeleteInbox(t *testing.T, e *env) {
	for i := range 5 {
		appendOK(t, e.store, e.msg(alice, i), e.msg(aliceLaptop, i))
	}
	if err := e.store.DeleteInbox(context.Background(), alice); err != nil {
		t.Fatal(err)
	}
	expectInbox(t, e.store, alice, nil)
	if err := e.store.DeleteInbox(context.Background(), bob); err != nil {
		t.Fatalf("delete of an empty inbox: %v", err)
	}
	// Messages appended after the deletion, even with old ids, are kept.
	appendOK(t, e.store, e.msg(alice, 2))
	e.store = e.reopen(t, e.store)
	expectInbox(t, e.store, alice, []msgstore.Message{e.msg(alice, 2)})
	if n := len(readAll(t, e.store, aliceLaptop)); n != 5 {
		t.Fatalf("other inbox of the same user holds %d messages, want 5", n)
	}
}

func testExpiry(t *testing.T, e *env) {
	short := e.msg(alice, 1)
	short.Expiry = e.clock.Now().Add(time.Minute)
	already := e.msg(alice, 2)
	already.Expiry = e.clock.Now().Add(-time.Second)
	forever := e.msg(alice, 3)
	forever.Expiry = time.Time{}
	long := e.msg(alice, 4)
	appendOK(t, e.store, short, already, forever, long)
	if got := readAll(t, e.store, alice); len(got) != 3 {
		t.Fatalf("read %d messages, want 3: one was expired when appended", len(got))
	}
	e.clock.Advance(time.Hour)
	got := readAll(t, e.store, alice)
	if len(got) != 2 || got[0].ID != forever.ID || got[1].ID != long.ID {
		t.Fatalf("after the short expiry read %d messages", len(got))
	}
	n, err := e.store.Count(context.Background(), alice)
	if err != nil || n < 2 || n > 3 {
		t.Fatalf("count = %d, %v; want 2, or 3 before reclaiming", n, err)
	}
	if r, ok := e.store.(Reclaimer); ok {
		if err := r.Reclaim(context.Background()); err != nil {
			t.Fatal(err)
		}
		expectInbox(t, e.store, alice, []msgstore.Message{forever, long})
	}
	e.clock.Advance(48 * time.Hour)
	if got := readAll(t, e.store, alice); len(got) != 1 || got[0].ID != forever.ID {
		t.Fatalf("after every expiry read %d messages, want the one without expiry", len(got))
	}
}

func testReopen(t *testing.T, e *env) {
	var want []msgstore.Message
	for i := range 20 {
		m := e.msg(alice, i)
		appendOK(t, e.store, m, e.msg(bob, i))
		if i%4 != 0 {
			want = append(want, m)
		}
	}
	deleteOK(t, e.store, alice, 0, 4, 8, 12, 16)
	e.store = e.reopen(t, e.store)
	expectInbox(t, e.store, alice, want)
	if n := len(readAll(t, e.store, bob)); n != 20 {
		t.Fatalf("bob holds %d messages after reopen, want 20", n)
	}
	// Order and cursors keep working across reopens.
	appendOK(t, e.store, e.msg(alice, 99))
	e.store = e.reopen(t, e.store)
	got := readAll(t, e.store, alice)
	if len(got) != len(want)+1 || got[len(got)-1].ID != idOf(99) {
		t.Fatalf("after second reopen read %d messages, last %x", len(got), got[len(got)-1].ID)
	}
}

func testExpiredAfterReopen(t *testing.T, e *env) {
	m := e.msg(alice, 1)
	m.Expiry = e.clock.Now().Add(time.Minute)
	keep := e.msg(alice, 2)
	appendOK(t, e.store, m, keep)
	e.clock.Advance(time.Hour)
	e.store = e.reopen(t, e.store)
	expectInbox(t, e.store, alice, []msgstore.Message{keep})
}

func testCopies(t *testing.T, e *env) {
	m := e.msg(alice, 1)
	want := m
	want.Body = bytes.Clone(m.Body)
	appendOK(t, e.store, m)
	m.Body[0] ^= 0xff
	got := readAll(t, e.store, alice)
	got[0].Body[0] ^= 0xff
	expectInbox(t, e.store, alice, []msgstore.Message{want})
}

func testBigBody(t *testing.T, e *env) {
	m := e.msg(alice, 1)
	m.Body = bytes.Repeat([]byte{0xc3, 0x7e, 0x01}, msgstore.MaxBodySize/3+1)[:msgstore.MaxBodySize]
	long := msgstore.Inbox{UserID: strings.Repeat("u", msgstore.MaxNameSize), DeviceID: strings.Repeat("d", msgstore.MaxNameSize)}
	n := e.msg(long, 2)
	appendOK(t, e.store, m, n)
	e.store = e.reopen(t, e.store)
	expectInbox(t, e.store, alice, []msgstore.Message{m})
	expectInbox(t, e.store, long, []msgstore.Message{n})
}

func testBadInput(t *testing.T, e *env) {
	ctx := context.Background()
	good := e.msg(alice, 1)
	badMsgs := map[string]func(*msgstore.Message){
		"empty user":    func(m *msgstore.Message) { m.Inbox.UserID = "" },
		"empty device":  func(m *msgstore.Message) { m.Inbox.DeviceID = "" },
		"long user":     func(m *msgstore.Message) { m.Inbox.UserID = strings.Repeat("u", msgstore.MaxNameSize+1) },
		"long device":   func(m *msgstore.Message) { m.Inbox.DeviceID = strings.Repeat("d", msgstore.MaxNameSize+1) },
		"oversize body": func(m *msgstore.Message) { m.Body = make([]byte, msgstore.MaxBodySize+1) },
	}
	for name, spoil := range badMsgs {
		bad := e.msg(alice, 2)
		spoil(&bad)
		// A bad message rejects the whole call.
		if err := e.store.Append(ctx, []msgstore.Message{good, bad}); !errors.Is(err, msgstore.ErrInvalid) {
			t.Errorf("append with %s = %v, want msgstore.ErrInvalid", name, err)
		}
	}
	if err := e.store.Append(ctx, make([]msgstore.Message, msgstore.MaxBatch+1)); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("append of MaxBatch+1 messages = %v", err)
	}
	expectInbox(t, e.store, alice, nil)

	bad := msgstore.Inbox{UserID: "alice"}
	if _, err := e.store.Read(ctx, bad, nil, 1, msgstore.MaxReadBytes); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("read of bad inbox = %v", err)
	}
	for _, limit := range []int{0, -1, msgstore.MaxBatch + 1} {
		if _, err := e.store.Read(ctx, alice, nil, limit, msgstore.MaxReadBytes); !errors.Is(err, msgstore.ErrInvalid) {
			t.Errorf("read with limit %d = %v", limit, err)
		}
	}
	if _, err := e.store.Read(ctx, alice, msgstore.Cursor("not a cursor of ours, certainly"), 1, msgstore.MaxReadBytes); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("read with garbage cursor = %v", err)
	}
	for _, budget := range []int{0, -1, msgstore.MaxReadBytes + 1} {
		if _, err := e.store.Read(ctx, alice, nil, 1, budget); !errors.Is(err, msgstore.ErrInvalid) {
			t.Errorf("read with byte budget %d = %v", budget, err)
		}
	}
	if _, _, err := e.store.ReadIDs(ctx, bad, nil, 1); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("ReadIDs of bad inbox = %v", err)
	}
	for _, limit := range []int{0, -1, msgstore.MaxBatch + 1} {
		if _, _, err := e.store.ReadIDs(ctx, alice, nil, limit); !errors.Is(err, msgstore.ErrInvalid) {
			t.Errorf("ReadIDs with limit %d = %v", limit, err)
		}
	}
	if _, _, err := e.store.ReadIDs(ctx, alice, msgstore.Cursor("not a cursor of ours, certainly"), 1); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("ReadIDs with garbage cursor = %v", err)
	}
	if err := e.store.Delete(ctx, bad, nil); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("delete in bad inbox = %v", err)
	}
	if err := e.store.Delete(ctx, alice, make([]msgstore.ID, msgstore.MaxBatch+1)); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("delete of MaxBatch+1 ids = %v", err)
	}
	if _, err := e.store.Count(ctx, bad); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("count of bad inbox = %v", err)
	}
	if err := e.store.DeleteInbox(ctx, bad); !errors.Is(err, msgstore.ErrInvalid) {
		t.Errorf("delete of bad inbox = %v", err)
	}
}

func testClosed(t *testing.T, e *env) {
	ctx := context.Background()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{
		"Append":      e.store.Append(ctx, []msgstore.Message{e.msg(alice, 1)}),
		"Delete":      e.store.Delete(ctx, alice, []msgstore.ID{idOf(1)}),
		"DeleteInbox": e.store.DeleteInbox(ctx, alice),
		"Close":       e.store.Close(),
	}
	_, checks["Read"] = e.store.Read(ctx, alice, nil, 1, msgstore.MaxReadBytes)
	_, _, checks["ReadIDs"] = e.store.ReadIDs(ctx, alice, nil, 1)
	_, checks["Count"] = e.store.Count(ctx, alice)
	_, checks["Get"] = e.store.Get(ctx, alice, idOf(1))
	for name, err := range checks {
		if !errors.Is(err, msgstore.ErrClosed) {
			t.Errorf("%s after Close = %v, want msgstore.ErrClosed", name, err)
		}
	}
}

func testContextCanceled(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checks := map[string]error{
		"Append":      e.store.Append(ctx, []msgstore.Message{e.msg(alice, 1)}),
		"Delete":      e.store.Delete(ctx, alice, []msgstore.ID{idOf(1)}),
		"DeleteInbox": e.store.DeleteInbox(ctx, alice),
	}
	_, checks["Read"] = e.store.Read(ctx, alice, nil, 1, msgstore.MaxReadBytes)
	_, _, checks["ReadIDs"] = e.store.ReadIDs(ctx, alice, nil, 1)
	_, checks["Count"] = e.store.Count(ctx, alice)
	_, checks["Get"] = e.store.Get(ctx, alice, idOf(1))
	for name, err := range checks {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled context = %v", name, err)
		}
	}
	expectInbox(t, e.store, alice, nil)
}

// testConcurrentAppenders checks that concurrent appends, which backends commit together,
// lose nothing and keep each appender's order.
func testConcurrentAppenders(t *testing.T, e *env) {
	const appenders, each = 32, 40
	inboxes := []msgstore.Inbox{alice, bob, aliceLaptop}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for a := range appenders {
		wg.Go(func() {
			for i := range each {
				n := a*1000 + i
				if err := e.store.Append(context.Background(), []msgstore.Message{e.msg(inboxes[n%len(inboxes)], n)}); err != nil {
					failed.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d appenders failed", n)
	}
	check := func() {
		total := 0
		for _, in := range inboxes {
			last := map[int]int{}
			for _, m := range readAll(t, e.store, in) {
				n := int(binary.BigEndian.Uint64(m.ID[8:]))
				a, i := n/1000, n%1000
				if prev, ok := last[a]; ok && prev >= i {
					t.Fatalf("inbox %s: appender %d message %d after %d", in, a, i, prev)
				}
				last[a] = i
				total++
			}
		}
		if total != appenders*each {
			t.Fatalf("stored %d messages, want %d", total, appenders*each)
		}
	}
	check()
	e.store = e.reopen(t, e.store)
	check()
}

// testConcurrentAppendDelete runs appenders and ackers side by side, the way the receive
// path deletes while the send path appends.
func testConcurrentAppendDelete(t *testing.T, e *env) {
	const n = 400
	var wg sync.WaitGroup
	acked := make(chan int, n)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				if err := e.store.Append(context.Background(), []msgstore.Message{e.msg(alice, i)}); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					acked <- i
				}
			}
		})
	}
	var ackers sync.WaitGroup
	ackers.Go(func() {
		for i := range acked {
			if err := e.store.Delete(context.Background(), alice, []msgstore.ID{idOf(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	close(acked)
	ackers.Wait()
	verify := func() {
		got := readAll(t, e.store, alice)
		if len(got) != n/2 {
			t.Fatalf("%d messages left, want %d", len(got), n/2)
		}
		for _, m := range got {
			if binary.BigEndian.Uint64(m.ID[8:])%2 == 0 {
				t.Fatalf("acknowledged message %x still there", m.ID)
			}
		}
	}
	verify()
	e.store = e.reopen(t, e.store)
	verify()
}
