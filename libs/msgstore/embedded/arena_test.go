package embedded

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// TestArenaEntryHasNoPointers checks that entries may live outside the Go heap: the
// garbage collector never looks there, so a pointer in an entry would dangle.
func TestArenaEntryHasNoPointers(t *testing.T) {
	typ := reflect.TypeFor[entry]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.Type.Kind() != reflect.Uint32 {
			t.Errorf("entry.%s is a %s; the arena holds only entries of plain integers", f.Name, f.Type)
		}
	}
}

// block is an allocation of the arena under test, with the value it was filled with.
type block struct {
	es  []entry
	c   *chunk
	tag uint32
}

// fill writes tag into every entry the block can hold.
func (b *block) fill() {
	b.es = b.es[:cap(b.es)]
	for i := range b.es {
		b.es[i] = entry{seqLo: b.tag, fp: uint32(i), n: b.tag}
	}
}

// intact reports whether the block still holds what fill wrote: no other block
// overlaps it.
func (b *block) intact() bool {
	for i := range b.es {
		if e := b.es[i]; e.seqLo != b.tag || e.fp != uint32(i) || e.n != b.tag {
			return false
		}
	}
	return true
}

// TestArenaFillDrainReuse allocates blocks of every size class and beyond, writes each
// full and checks that none overlaps another; frees half of each size and checks that new
// blocks reuse the freed ones without touching more memory; then frees all and checks
// that the chunks went back to the system but for one kept per class, with its pages
// discarded.
func TestArenaFillDrainReuse(t *testing.T) {
	a := newArena()
	sizes := []int{1, 2, 7, 100, 1000, a.classes[len(a.classes)-1].entries, a.classes[len(a.classes)-1].entries + 1, 50_000}
	var blocks []*block
	tag := uint32(1)
	alloc := func(n int) *block {
		es, c := a.alloc(n)
		if len(es) != 0 || cap(es) < n || cap(es) != a.capacity(n) {
			t.Fatalf("alloc(%d) = len %d cap %d; want len 0, cap %d", n, len(es), cap(es), a.capacity(n))
		}
		b := &block{es: es, c: c, tag: tag}
		tag++
		b.fill()
		return b
	}
	for range 40 {
		for _, n := range sizes {
			blocks = append(blocks, alloc(n))
		}
	}
	for _, b := range blocks {
		if !b.intact() {
			t.Fatalf("block %d was overwritten: blocks overlap", b.tag)
		}
	}
	filled := a.touched
	if a.used > a.touched || a.touched > a.mapped {
		t.Fatalf("used %d, touched %d, mapped %d bytes: want used <= touched <= mapped", a.used, a.touched, a.mapped)
	}

	var kept []*block
	for i, b := range blocks {
		if i/len(sizes)%2 == 0 { // every other round
			a.free(b.es, b.c)
		} else {
			kept = append(kept, b)
		}
	}
	// Small blocks freed are reused before fresh ones are touched; big ones have their
	// own mappings, unmapped when freed and mapped anew.
	for range 20 {
		for _, n := range sizes {
			kept = append(kept, alloc(n))
		}
	}
	if a.touched > filled {
		t.Errorf("arena touched %d bytes after freeing half and allocating as much again; want at most %d", a.touched, filled)
	}
	for _, b := range kept {
		if !b.intact() {
			t.Fatalf("block %d was overwritten after reuse", b.tag)
		}
	}

	for _, b := range kept {
		a.free(b.es, b.c)
	}
	if a.used != 0 || a.touched != 0 {
		t.Errorf("after freeing every block: used %d, touched %d bytes; want 0", a.used, a.touched)
	}
	if max := int64(len(a.classes)) * chunkSize; a.mapped > max {
		t.Errorf("after freeing every block: %d bytes mapped; want at most one chunk per class, %d", a.mapped, max)
	}
	// A chunk kept after it emptied serves blocks again.
	b := alloc(100)
	if !b.intact() {
		t.Fatal("block in a kept chunk was overwritten")
	}
	a.free(b.es, b.c)
	a.release()
	if a.mapped != 0 || len(a.chunks) != 0 {
		t.Errorf("after release: %d bytes in %d chunks mapped; want none", a.mapped, len(a.chunks))
	}
}

// TestArenaFreeChecks checks that free refuses what is not a live block of the chunk
// named: memory it handed out twice would be shared by two inboxes.
func TestArenaFreeChecks(t *testing.T) {
	a := newArena()
	defer a.release()
	es, c := a.alloc(10)
	other, oc := a.alloc(50_000)
	for name, bad := range map[string]func(){
		"heap slice":          func() { a.free(make([]entry, 0, cap(es)), c) },
		"heap slice no chunk": func() { a.free(make([]entry, 1), nil) },
		"wrong chunk":         func() { a.free(es, oc) },
		"wrong capacity":      func() { a.free(es[:0:cap(es)-1], c) },
		"inside a block":      func() { a.free(es[1:cap(es)], c) },
		"big block part":      func() { a.free(other[:0:1], oc) },
		"never handed out": func() {
			es := blockEntries(c, 5*cap(es)*entrySize, cap(es))
			a.free(es, c)
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("free(%s) did not panic", name)
				}
			}()
			bad()
		})
	}
	a.free(es, c)
	t.Run("twice", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("second free of a block did not panic")
			}
		}()
		a.free(es, c)
	})
	a.free(other, oc)
}

// TestIndexMemoryDrains fills a store's inboxes, acknowledges every message of most of
// them and half of the rest, and checks that the index gives its arena memory back,
// then that new messages reuse it.
func TestIndexMemoryDrains(t *testing.T) {
	const inboxes, perInbox = 300, 200
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	inbox := func(i int) msgstore.Inbox { return msgstore.Inbox{UserID: fmt.Sprintf("user-%d", i), DeviceID: "d"} }
	id := func(i, j int) msgstore.ID { return msgstore.ID{byte(i >> 8), byte(i), byte(j >> 8), byte(j)} }
	fill := func() {
		for j := range perInbox {
			var msgs []msgstore.Message
			for i := range inboxes {
				msgs = append(msgs, msgstore.Message{Inbox: inbox(i), ID: id(i, j), Kind: 1, Body: []byte("x"), Timestamp: now})
			}
			if err := s.Append(ctx, msgs); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill()
	filled := IndexArenaBytes(s)
	if min := int64(inboxes * perInbox * entrySize); filled < min {
		t.Fatalf("arena holds %d bytes for %d messages; want at least %d", filled, inboxes*perInbox, min)
	}
	for i := range inboxes {
		n := perInbox
		if i%10 == 0 {
			n = perInbox / 2 // these keep half their messages
		}
		var ids []msgstore.ID
		for j := range n {
			ids = append(ids, id(i, j))
		}
		if err := s.Delete(ctx, inbox(i), ids); err != nil {
			t.Fatal(err)
		}
	}
	drained := IndexArenaBytes(s)
	t.Logf("arena: %d bytes filled, %d drained", filled, drained)
	// What is left: a tenth of the inboxes with half their messages, in blocks of their
	// size after the sweep, and partly used chunks.
	if want := filled / 10; drained > want {
		t.Errorf("arena holds %d bytes after draining, %d when full; want at most %d", drained, filled, want)
	}
	if c, err := s.Count(ctx, inbox(0)); err != nil || c != perInbox/2 {
		t.Fatalf("Count = %d, %v; want %d", c, err, perInbox/2)
	}
	msgs, err := s.Read(ctx, inbox(0), nil, msgstore.MaxBatch, msgstore.MaxReadBytes)
	if err != nil || len(msgs) != perInbox/2 || msgs[0].ID != id(0, perInbox/2) {
		t.Fatalf("Read after draining = %d messages, %v; want the %d not acknowledged", len(msgs), err, perInbox/2)
	}
	// Filling again reuses the memory: no more than the first time.
	for i := range inboxes {
		if i%10 == 0 {
			if err := s.DeleteInbox(ctx, inbox(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill()
	if again := IndexArenaBytes(s); again > filled {
		t.Errorf("arena holds %d bytes filled again; want at most %d, as the first time", again, filled)
	}
}
