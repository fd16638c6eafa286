package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded"
	"github.com/guardyn/guardyn/libs/msgstore/embedded/internal/record"
	"github.com/guardyn/guardyn/libs/msgstore/msgstoretest"
)

func openWith(opts embedded.Options) msgstoretest.Opener {
	return func(tb testing.TB, dir string, clock func() time.Time) msgstore.Store {
		tb.Helper()
		o := opts
		o.Now = clock
		s, err := embedded.Open(dir, o)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) {
	// 1 MiB instead of the default 64 MiB: every test opens fresh stores, and segments
	// are zero-filled when created.
	msgstoretest.Run(t, openWith(embedded.Options{SegmentSize: 1 << 20}))
}

// TestConformanceSmallSegments runs the suite with tiny segments, so rolling and
// compaction happen all the time.
func TestConformanceSmallSegments(t *testing.T) {
	msgstoretest.Run(t, openWith(embedded.Options{SegmentSize: 2 << 10}))
}

func body(n int) []byte {
	b := make([]byte, 200)
	for i := range b {
		b[i] = byte(n + i)
	}
	return b
}

func message(in msgstore.Inbox, n int) msgstore.Message {
	var id msgstore.ID
	id[0], id[1], id[2] = byte(n>>16), byte(n>>8), byte(n)
	return msgstore.Message{Inbox: in, ID: id, Body: body(n), Timestamp: time.Unix(1_750_000_000, 0)}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// TestCompactionBoundsDisk appends and acknowledges far more than the disk bound while a
// few messages stay unacknowledged, then checks that old segments went away and the
// survivors are intact after reopening.
func TestCompactionBoundsDisk(t *testing.T) {
	dir := t.TempDir()
	const segSize = 8 << 10
	opts := embedded.Options{SegmentSize: segSize, OnError: func(err error) { t.Errorf("background error: %v", err) }}
	s, err := embedded.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	busy := msgstore.Inbox{UserID: "busy", DeviceID: "d"}
	offline := msgstore.Inbox{UserID: "offline", DeviceID: "d"}
	var kept []msgstore.Message
	for i := range 2000 {
		m := message(busy, i)
		if err := s.Append(ctx, []msgstore.Message{m}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, busy, []msgstore.ID{m.ID}); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			o := message(offline, i)
			kept = append(kept, o)
			if err := s.Append(ctx, []msgstore.Message{o}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, f := range segmentFiles(t, dir) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
	}
	// Live data is about 20 records of ~270 bytes; the bound is twice that plus two
	// segments, plus the active segment that may overshoot by one batch.
	if limit := int64(5 * segSize); total > limit {
		t.Fatalf("log holds %d bytes after compaction, want at most %d", total, limit)
	}
	s, err = embedded.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Read(ctx, offline, nil, msgstore.MaxBatch, msgstore.MaxReadBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(kept) {
		t.Fatalf("offline inbox holds %d messages after compaction, want %d", len(got), len(kept))
	}
	for i := range got {
		if got[i].ID != kept[i].ID || string(got[i].Body) != string(kept[i].Body) {
			t.Fatalf("message %d changed by compaction", i)
		}
	}
	if n, err := s.Count(ctx, busy); err != nil || n != 0 {
		t.Fatalf("busy inbox count = %d, %v; want 0", n, err)
	}
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := embedded.Open(dir, embedded.Options{}); err == nil {
		s2.Close()
		t.Fatal("second Open of a locked dir succeeded")
	}
}

// writeMessages fills a fresh store with n messages of one inbox and closes it.
func writeMessages(t *testing.T, dir string, opts embedded.Options, n int) msgstore.Inbox {
	t.Helper()
	in := msgstore.Inbox{UserID: "u", DeviceID: "d"}
	s, err := embedded.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := s.Append(context.Background(), []msgstore.Message{message(in, i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return in
}

// tornTailSetup writes 5 messages and returns the inbox, the active segment's path, its
// bytes and where the records end (zeros follow up to the preallocated size).
func tornTailSetup(t *testing.T, dir string) (msgstore.Inbox, string, []byte, int) {
	t.Helper()
	opts := embedded.Options{SegmentSize: 64 << 10}
	in := writeMessages(t, dir, opts, 5)
	files := segmentFiles(t, dir)
	path := files[len(files)-1]
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := message(in, 0)
	used := 16 + 5*len(record.AppendMessage(nil, 1, &m))
	if used > len(whole) || !allZero(whole[used:]) || allZero(whole[used-8:used]) {
		t.Fatalf("records do not end at %d of %d bytes", used, len(whole))
	}
	return in, path, whole, used
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestTornTail zeroes the last record from every position inside it, as a crash in the
// middle of a write leaves it, and checks that Open drops exactly that record, keeps the
// earlier ones and appends correctly afterwards.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	in, path, whole, used := tornTailSetup(t, dir)
	recordSize := (used - 16) / 5
	for cut := used - recordSize + 1; cut < used; cut += 13 {
		torn := bytes.Clone(whole)
		clear(torn[cut:])
		if err := os.WriteFile(path, torn, 0o600); err != nil {
			t.Fatal(err)
		}
		var reported []error
		s, err := embedded.Open(dir, embedded.Options{OnError: func(err error) { reported = append(reported, err) }})
		if err != nil {
			t.Fatalf("open with tail torn at %d: %v", cut, err)
		}
		got, err := s.Read(context.Background(), in, nil, 10, msgstore.MaxReadBytes)
		if err != nil || len(got) != 4 {
			t.Fatalf("tail torn at %d: read %d messages, %v; want 4", cut, len(got), err)
		}
		if len(reported) != 1 {
			t.Fatalf("tail torn at %d: %d errors reported, want 1", cut, len(reported))
		}
		if err := s.Append(context.Background(), []msgstore.Message{message(in, 4)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = embedded.Open(dir, embedded.Options{OnError: func(err error) { t.Errorf("second open: %v", err) }})
		if err != nil {
			t.Fatal(err)
		}
		got, err = s.Read(context.Background(), in, nil, 10, msgstore.MaxReadBytes)
		if err != nil || len(got) != 5 || string(got[4].Body) != string(body(4)) {
			t.Fatalf("tail torn at %d: after re-append read %d messages, %v", cut, len(got), err)
		}
		s.Close()
	}
}

// TestGarbageTail writes bytes a crash can leave after the last record and checks that
// they are dropped and the messages before them kept.
func TestGarbageTail(t *testing.T) {
	for name, tail := range map[string][]byte{
		"huge length":  {0xde, 0xad, 0xbe, 0xef, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3},
		"bad crc":      {0, 0, 0, 1, 0, 0, 0, 3, 1, 1, 1},
		"half header":  {0x12, 0x34},
		"stray page":   append(make([]byte, 4096), 0xff),
		"file shorter": nil,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			in, path, whole, used := tornTailSetup(t, dir)
			data := bytes.Clone(whole)
			if tail == nil {
				data = data[:used]
			} else {
				copy(data[used:], tail)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := embedded.Open(dir, embedded.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got, err := s.Read(context.Background(), in, nil, 10, msgstore.MaxReadBytes); err != nil || len(got) != 5 {
				t.Fatalf("read %d messages, %v; want 5", len(got), err)
			}
		})
	}
}

// TestCorruptOldSegment flips a byte inside a segment that is not the last one, where
// damage cannot be a torn write, and expects Open to refuse with ErrCorrupt.
func TestCorruptOldSegment(t *testing.T) {
	dir := t.TempDir()
	writeMessages(t, dir, embedded.Options{SegmentSize: 1 << 10}, 20)
	files := segmentFiles(t, dir)
	if len(files) < 2 {
		t.Fatalf("only %d segments", len(files))
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(files[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := embedded.Open(dir, embedded.Options{})
	if err == nil {
		s.Close()
		t.Fatal("open of a corrupt segment succeeded")
	}
	if !errors.Is(err, msgstore.ErrCorrupt) {
		t.Fatalf("open = %v, want msgstore.ErrCorrupt", err)
	}
}

func TestBadSegmentHeader(t *testing.T) {
	for name, header := range map[string][]byte{
		"foreign file":   []byte("PK\x03\x04 this is a zip file, not a log at all"),
		"future version": []byte("GDYNMSG\x09\x00\x00\x00\x00\x00\x00\x00\x01"),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "0000000000000001.log"), header, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := embedded.Open(dir, embedded.Options{})
			if err == nil {
				s.Close()
				t.Fatal("open succeeded")
			}
			if !errors.Is(err, msgstore.ErrCorrupt) {
				t.Fatalf("open = %v, want msgstore.ErrCorrupt", err)
			}
		})
	}
}

// TestReclaimInBackground checks that the periodic reclaim drops expired messages from
// Count without any call.
func TestReclaimInBackground(t *testing.T) {
	clock := msgstoretest.NewClock()
	s, err := embedded.Open(t.TempDir(), embedded.Options{Now: clock.Now, ReclaimInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := msgstore.Inbox{UserID: "u", DeviceID: "d"}
	m := message(in, 1)
	m.Expiry = clock.Now().Add(time.Minute)
	if err := s.Append(context.Background(), []msgstore.Message{m, message(in, 2)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.Count(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("count still %d after 5s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReopenKeepsFewFiles opens and closes a store many times, with spares created
// ahead of time, and checks that empty segments do not pile up.
func TestReopenKeepsFewFiles(t *testing.T) {
	dir := t.TempDir()
	opts := embedded.Options{SegmentSize: 4 << 10}
	in := msgstore.Inbox{UserID: "u", DeviceID: "d"}
	for round := range 6 {
		s, err := embedded.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			if err := s.Append(context.Background(), []msgstore.Message{message(in, 100*round+i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := embedded.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.Count(context.Background(), in); err != nil || n != 72 {
		t.Fatalf("count = %d, %v; want 72", n, err)
	}
	// 72 records of ~250 bytes fill about 5 segments of 4 KiB.
	if files := segmentFiles(t, dir); len(files) > 7 {
		t.Fatalf("%d segment files after 6 reopens: %v", len(files), files)
	}
}

// TestMovesToPreallocatedSegment checks that a new store, whose first segment grows with
// every write, switches to a zero-filled segment once it is half full, and that the
// zeros do not confuse a reopen.
func TestMovesToPreallocatedSegment(t *testing.T) {
	dir := t.TempDir()
	const segSize = 16 << 10
	opts := embedded.Options{SegmentSize: segSize}
	s, err := embedded.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	in := msgstore.Inbox{UserID: "u", DeviceID: "d"}
	n := 0
	deadline := time.Now().Add(10 * time.Second)
	for len(segmentFiles(t, dir)) < 2 || n < 40 {
		if time.Now().After(deadline) {
			t.Fatalf("still %d segment files after %d appends", len(segmentFiles(t, dir)), n)
		}
		if err := s.Append(context.Background(), []msgstore.Message{message(in, n)}); err != nil {
			t.Fatal(err)
		}
		n++
		time.Sleep(time.Millisecond)
	}
	// Appends continue into the spare segment once it is ready.
	for range 5 {
		if err := s.Append(context.Background(), []msgstore.Message{message(in, n)}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	files := segmentFiles(t, dir)
	fi, err := os.Stat(files[1])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != segSize {
		t.Fatalf("second segment is %d bytes, want it zero-filled to %d", fi.Size(), segSize)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = embedded.Open(dir, embedded.Options{SegmentSize: segSize, OnError: func(err error) { t.Errorf("reopen: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Count(context.Background(), in); err != nil || got != n {
		t.Fatalf("count after reopen = %d, %v; want %d", got, err, n)
	}
}

// TestReadDuringCompaction reads an inbox over and over while other traffic makes
// compaction move its messages and delete their old segments: every read must see all of
// them, intact.
func TestReadDuringCompaction(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir, embedded.Options{SegmentSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	kept := msgstore.Inbox{UserID: "kept", DeviceID: "d"}
	busy := msgstore.Inbox{UserID: "busy", DeviceID: "d"}
	for i := range 30 {
		if err := s.Append(ctx, []msgstore.Message{message(kept, i)}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 400 {
			m := message(busy, 1000+i)
			if err := s.Append(ctx, []msgstore.Message{m}); err != nil {
				t.Error(err)
				return
			}
			if err := s.Delete(ctx, busy, []msgstore.ID{m.ID}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	reads := 0
	for {
		select {
		case <-done:
			if reads == 0 {
				t.Fatal("no read overlapped the traffic")
			}
			// The segments the kept messages were first written to are gone.
			if first := filepath.Base(segmentFiles(t, dir)[0]); first == "0000000000000001.log" {
				t.Fatal("no compaction happened")
			}
			return
		default:
		}
		got, err := s.Read(ctx, kept, nil, 100, msgstore.MaxReadBytes)
		if err != nil {
			t.Fatalf("read during compaction: %v", err)
		}
		if len(got) != 30 {
			t.Fatalf("read %d messages during compaction, want 30", len(got))
		}
		for i, m := range got {
			if !bytes.Equal(m.Body, body(i)) {
				t.Fatalf("message %d damaged during compaction", i)
			}
		}
		reads++
	}
}
