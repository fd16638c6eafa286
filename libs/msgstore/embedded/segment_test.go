package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded/internal/record"
)

func sampleSegment() []byte {
	in := msgstore.Inbox{UserID: "u", DeviceID: "d"}
	b := binary.BigEndian.AppendUint64([]byte(segmentMagic), 7)
	for i := range 3 {
		m := &msgstore.Message{Inbox: in, ID: msgstore.ID{byte(i)}, Body: []byte("body"), Timestamp: time.Unix(1, 0)}
		b = record.AppendMessage(b, uint64(7+i), m)
	}
	b = record.AppendDelete(b, in, []uint64{8})
	return record.AppendDeleteInbox(b, in)
}

func TestScanSegment(t *testing.T) {
	data := sampleSegment()
	var types []record.Type
	first, end, err := scanSegment(data, func(r *record.Record, off, n int) error { types = append(types, r.Type); return nil })
	if err != nil || first != 7 || len(types) != 5 || end != len(data) {
		t.Fatalf("scan = first seq %d, %d records, end %d of %d, %v", first, len(types), end, len(data), err)
	}
	// Preallocated zeros after the records are the normal end of a segment.
	padded := append(bytes.Clone(data), make([]byte, 5000)...)
	if _, end, err := scanSegment(padded, func(*record.Record, int, int) error { return nil }); err != nil || end != len(data) {
		t.Fatalf("scan of zero-padded segment = end %d, %v; want %d", end, err, len(data))
	}
	_, end, err = scanSegment(data[:len(data)-3], func(*record.Record, int, int) error { return nil })
	var torn *errTornTail
	if !errors.As(err, &torn) || !errors.Is(err, record.ErrShort) || torn.validLen != end {
		t.Fatalf("scan of cut segment = %v, want a torn tail", err)
	}
	// A torn record followed by zeros is still torn, not the end.
	torn2 := append(bytes.Clone(data[:len(data)-3]), make([]byte, 100)...)
	if _, _, err := scanSegment(torn2, func(*record.Record, int, int) error { return nil }); !errors.As(err, &torn) {
		t.Fatalf("scan of torn record followed by zeros = %v, want a torn tail", err)
	}
}

// FuzzScanSegment feeds arbitrary segment bytes to the replay scanner: it must never
// panic, must only report records inside the data in increasing order, and must stop
// with a torn tail or corruption error where the data stops making sense.
func FuzzScanSegment(f *testing.F) {
	data := sampleSegment()
	f.Add(data)
	f.Add(data[:len(data)-5])
	f.Add(data[:segmentHeaderSize])
	f.Add(data[:5])
	f.Add(append(append([]byte{}, data...), make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		last := segmentHeaderSize
		_, end, err := scanSegment(b, func(r *record.Record, off, n int) error {
			if off != last || n <= 0 || off+n > len(b) {
				t.Fatalf("record at %d+%d after end %d of %d bytes", off, n, last, len(b))
			}
			last = off + n
			return nil
		})
		var torn *errTornTail
		switch {
		case err == nil:
			if end != last || !allZero(b[end:]) {
				t.Fatalf("clean scan ended at %d of %d, last record ended at %d", end, len(b), last)
			}
		case errors.As(err, &torn):
			if torn.validLen != end || (end != last && end != 0) {
				t.Fatalf("torn tail at %d, end %d, last record ended at %d", torn.validLen, end, last)
			}
		case !errors.Is(err, msgstore.ErrCorrupt):
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzOpen writes arbitrary bytes as the first two segments of a store and opens it:
// Open must return an error or a store that reads, appends and closes without panicking,
// whatever the records claim (reused sequence numbers, deletes of unknown messages...).
func FuzzOpen(f *testing.F) {
	in := msgstore.Inbox{UserID: "u", DeviceID: "d"}
	other := msgstore.Inbox{UserID: "v", DeviceID: "d"}
	header := func(seq uint64) []byte { return binary.BigEndian.AppendUint64([]byte(segmentMagic), seq) }
	msg := func(b []byte, inbox msgstore.Inbox, id byte, seq uint64) []byte {
		return record.AppendMessage(b, seq, &msgstore.Message{Inbox: inbox, ID: msgstore.ID{id}, Body: []byte("x")})
	}
	f.Add(sampleSegment(), []byte(nil))
	f.Add(sampleSegment(), sampleSegment())
	f.Add(sampleSegment()[:40], header(9))
	// Two messages claiming one sequence number, then deletes that used to confuse replay.
	forged := msg(msg(header(1), in, 1, 5), other, 2, 5)
	forged = record.AppendDeleteInbox(record.AppendDelete(forged, other, []uint64{5}), in)
	f.Add(forged, []byte(nil))
	f.Add(msg(header(1), in, 1, 1<<63), msg(header(2), in, 1, 1<<63))
	f.Add(header(1), append(header(1), 0, 0, 1))
	f.Fuzz(func(t *testing.T, seg1, seg2 []byte) {
		dir := t.TempDir()
		for i, data := range [][]byte{seg1, seg2} {
			if data == nil {
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, segmentName(uint64(i+1))), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(dir, Options{SegmentSize: 4 << 10})
		if err != nil {
			return
		}
		ctx := context.Background()
		for _, inbox := range []msgstore.Inbox{in, other} {
			msgs, err := s.Read(ctx, inbox, nil, msgstore.MaxBatch, msgstore.MaxReadBytes)
			// ReadIDs answers from the index what Read found in the log; a budget of one
			// byte still reads the first message.
			if ids, _, idErr := s.ReadIDs(ctx, inbox, nil, msgstore.MaxBatch); err == nil && (idErr != nil || len(ids) != len(msgs)) {
				t.Fatalf("ReadIDs listed %d ids (%v), Read returned %d messages", len(ids), idErr, len(msgs))
			}
			if first, ferr := s.Read(ctx, inbox, nil, msgstore.MaxBatch, 1); err == nil && ferr == nil && len(msgs) > 0 && (len(first) != 1 || first[0].ID != msgs[0].ID) {
				t.Fatalf("Read with a budget of one byte returned %d messages", len(first))
			}
			if err == nil {
				for _, m := range msgs {
					if err := s.Delete(ctx, inbox, []msgstore.ID{m.ID}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := s.Count(ctx, inbox); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Append(ctx, []msgstore.Message{{Inbox: in, ID: msgstore.ID{42}, Body: []byte("new")}}); err != nil {
			t.Fatalf("append after open: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	})
}
