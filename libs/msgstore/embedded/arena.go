package embedded

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"unsafe"
)

// The index keeps its entries in an arena outside the Go heap. They hold no pointers,
// so the garbage collector would never scan them, but on the heap they would still set
// its pace: with the default GOGC=100 the heap grows to twice the live heap between
// collections, and 10 M stored messages took 697 MB of resident memory for 340 MB of
// index (docs/storage.md, "Memory at 10 M stored messages"). In the arena they cost the
// pages they occupy, with no setting by the operator.
//
// Each inbox's entries stay one contiguous slice, which binary search and in-place
// deletion need, so most of the store indexes them as before; only allocation goes
// through the arena. A slice lives in a block of one of the size classes, which grow
// by about an eighth as slices on the heap did. Blocks of a class are cut from chunks
// of chunkSize mapped from the operating system (anonymous private memory on Linux, the
// Go heap elsewhere), touched only as they are handed out, and a chunk is unmapped
// once its last block is freed (one per class is kept, its pages discarded): memory
// goes back to the system as inboxes drain, and the arena never grows by copying
// itself. A block beyond maxSmallBlock gets a
// mapping of its own.
//
// Memory safety: the arena holds no Go pointers (entry has none, which
// TestArenaEntryHasNoPointers checks); the slices into it are held by the index under
// Store.mu and freed under it, the arena is released only after Close has set
// filesClosed, and free checks that a slice is a block it handed out and not yet freed.
// A failure to map memory panics, as the Go heap does when it cannot grow.

const (
	entrySize = int(unsafe.Sizeof(entry{}))
	// chunkSize is the unit mapped for blocks of one size class: big enough that a
	// 10 M-message index needs about a thousand mappings, small enough that chunks
	// empty and go back as inboxes drain.
	chunkSize     = 256 << 10
	maxSmallBlock = chunkSize / 8
)

// arena allocates blocks of entries outside the Go heap. It is not safe for concurrent
// use: the Store calls it under mu.
type arena struct {
	classes []sizeClass
	chunks  map[*chunk]struct{} // every chunk mapped, to release them all
	page    int
	closed  bool
	// mapped, touched and used count bytes: mapped from the system; in blocks handed
	// out at least once in mapped chunks (an upper bound of the arena's resident
	// memory); in blocks in use.
	mapped, touched, used int64
}

type sizeClass struct {
	entries int      // capacity of a block
	avail   []*chunk // chunks with a block free or never handed out
}

// chunk is one mapping: blocks of one class, or one big block (class -1).
type chunk struct {
	mem    []byte
	class  int
	blocks int      // blocks the chunk holds
	next   int      // blocks handed out at least once; those from next on are untouched
	free   []int32  // free blocks below next
	inUse  []uint64 // a bit per block
	used   int      // blocks in use
}

func newArena() *arena {
	a := &arena{chunks: map[*chunk]struct{}{}, page: os.Getpagesize()}
	for n := 1; n*entrySize <= maxSmallBlock; n = max(n+1, n+n/8) {
		a.classes = append(a.classes, sizeClass{entries: n})
	}
	return a
}

// capacity is the capacity of the block alloc(n) returns.
func (a *arena) capacity(n int) int {
	if n == 0 {
		return 0
	}
	if i, ok := a.class(n); ok {
		return a.classes[i].entries
	}
	return a.bigBytes(n) / entrySize
}

// class returns the smallest size class that holds n entries, if one does.
func (a *arena) class(n int) (int, bool) {
	i, _ := slices.BinarySearchFunc(a.classes, n, func(c sizeClass, n int) int { return cmp.Compare(c.entries, n) })
	return i, i < len(a.classes)
}

// bigBytes is the size of the mapping for a block of n entries beyond the classes:
// an eighth more, to grow into, rounded up to whole pages.
func (a *arena) bigBytes(n int) int {
	b := (n + n/8) * entrySize
	return (b + a.page - 1) / a.page * a.page
}

// alloc returns an empty slice whose backing array is a block of at least n entries,
// and the chunk that holds it; n == 0 gives neither.
func (a *arena) alloc(n int) ([]entry, *chunk) {
	if a.closed {
		panic("msgstore: index arena used after Close")
	}
	if n <= 0 {
		return nil, nil
	}
	ci, ok := a.class(n)
	if !ok {
		size := a.bigBytes(n)
		c := a.mapChunk(size, -1, 1)
		c.next, c.used = 1, 1
		c.inUse[0] = 1
		n := size / entrySize
		a.touched += int64(n * entrySize)
		a.used += int64(n * entrySize)
		return blockEntries(c, 0, n), c
	}
	cl := &a.classes[ci]
	bytes := cl.entries * entrySize
	if len(cl.avail) == 0 {
		cl.avail = append(cl.avail, a.mapChunk(chunkSize, ci, chunkSize/bytes))
	}
	c := cl.avail[len(cl.avail)-1]
	var b int
	if k := len(c.free); k > 0 {
		b = int(c.free[k-1])
		c.free = c.free[:k-1]
	} else {
		b = c.next
		c.next++
		a.touched += int64(bytes)
	}
	c.inUse[b/64] |= 1 << (b % 64)
	c.used++
	if len(c.free) == 0 && c.next == c.blocks {
		cl.avail = cl.avail[:len(cl.avail)-1]
	}
	a.used += int64(bytes)
	return blockEntries(c, b*bytes, cl.entries), c
}

// free returns the block of es, which alloc handed out in c; it panics if es is not
// such a block or was freed already.
func (a *arena) free(es []entry, c *chunk) {
	if c == nil {
		if cap(es) != 0 {
			panic("msgstore: index arena: freeing entries it does not hold")
		}
		return
	}
	if a.closed {
		panic("msgstore: index arena used after Close")
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(es))) - uintptr(unsafe.Pointer(unsafe.SliceData(c.mem)))
	bytes := a.blockBytes(c)
	b := int(off / uintptr(bytes))
	if off >= uintptr(len(c.mem)) || off%uintptr(bytes) != 0 || cap(es)*entrySize != bytes ||
		b >= c.next || c.inUse[b/64]&(1<<(b%64)) == 0 {
		panic(fmt.Sprintf("msgstore: index arena: freeing a block of %d entries at offset %d of a chunk it does not hold or freed already", cap(es), off))
	}
	c.inUse[b/64] &^= 1 << (b % 64)
	c.used--
	a.used -= int64(bytes)
	if c.class < 0 {
		a.unmapChunk(c)
		return
	}
	cl := &a.classes[c.class]
	if len(c.free) == 0 && c.next == c.blocks {
		cl.avail = append(cl.avail, c)
	}
	c.free = append(c.free, int32(b))
	if c.used > 0 {
		return
	}
	// An empty chunk goes back to the system unless it is the last one of its class
	// with room: then an inbox that fills and drains a block at a time, as a device
	// online does, does not map and unmap a chunk per message. The pages it touched
	// go back all the same, unless that was one block.
	if len(cl.avail) > 1 {
		cl.avail = slices.DeleteFunc(cl.avail, func(o *chunk) bool { return o == c })
		a.unmapChunk(c)
		return
	}
	if c.next > 1 {
		if err := discardMemory(c.mem[:min(len(c.mem), (c.next*bytes+a.page-1)/a.page*a.page)]); err != nil {
			panic(fmt.Sprintf("msgstore: discard %d bytes of the index: %v", c.next*bytes, err))
		}
		a.touched -= int64(c.next * bytes)
		c.next, c.free = 0, c.free[:0]
	}
}

// resize moves es to a block of capacity(n) entries, n >= len(es), and frees its old
// block; it keeps the block if that already has the capacity.
func (a *arena) resize(es []entry, c *chunk, n int) ([]entry, *chunk) {
	if n < len(es) {
		panic(fmt.Sprintf("msgstore: index arena: resizing %d entries to %d", len(es), n))
	}
	if a.capacity(n) == cap(es) {
		return es, c
	}
	moved, mc := a.alloc(n)
	moved = append(moved, es...) // within its capacity: it stays in the arena
	a.free(es, c)
	return moved, mc
}

// release unmaps every chunk; the arena may not be used after.
func (a *arena) release() {
	for c := range a.chunks {
		a.unmapChunk(c)
	}
	for i := range a.classes {
		a.classes[i].avail = nil
	}
	a.closed = true
}

func (a *arena) mapChunk(size, class, blocks int) *chunk {
	mem, err := mapMemory(size)
	if err != nil {
		panic(fmt.Sprintf("msgstore: map %d bytes for the index: %v", size, err))
	}
	c := &chunk{mem: mem, class: class, blocks: blocks, inUse: make([]uint64, (blocks+63)/64)}
	a.chunks[c] = struct{}{}
	a.mapped += int64(size)
	return c
}

func (a *arena) unmapChunk(c *chunk) {
	bytes := a.blockBytes(c)
	a.touched -= int64(c.next * bytes)
	// Blocks still in use here are released with the arena: the store is closed.
	a.used -= int64(c.used * bytes)
	a.mapped -= int64(len(c.mem))
	delete(a.chunks, c)
	if err := unmapMemory(c.mem); err != nil {
		panic(fmt.Sprintf("msgstore: unmap %d bytes of the index: %v", len(c.mem), err))
	}
	c.mem = nil
}

// blockBytes is the size of each block of c: whole entries.
func (a *arena) blockBytes(c *chunk) int {
	if c.class < 0 {
		return len(c.mem) / entrySize * entrySize
	}
	return a.classes[c.class].entries * entrySize
}

// blockEntries returns the empty slice of n entries at off in c, checking the bounds.
func blockEntries(c *chunk, off, n int) []entry {
	if off < 0 || n <= 0 || off+n*entrySize > len(c.mem) {
		panic(fmt.Sprintf("msgstore: index arena: block of %d entries at %d beyond a chunk of %d bytes", n, off, len(c.mem)))
	}
	return unsafe.Slice((*entry)(unsafe.Pointer(&c.mem[off])), n)[:0]
}
