package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
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
	first, end, err := scanSegment(data, func(r *record.Record, off, n int) { types = append(types, r.Type) })
	if err != nil || first != 7 || len(types) != 5 || end != len(data) {
		t.Fatalf("scan = first seq %d, %d records, end %d of %d, %v", first, len(types), end, len(data), err)
	}
	// Preallocated zeros after the records are the normal end of a segment.
	padded := append(bytes.Clone(data), make([]byte, 5000)...)
	if _, end, err := scanSegment(padded, func(*record.Record, int, int) {}); err != nil || end != len(data) {
		t.Fatalf("scan of zero-padded segment = end %d, %v; want %d", end, err, len(data))
	}
	_, end, err = scanSegment(data[:len(data)-3], func(*record.Record, int, int) {})
	var torn *errTornTail
	if !errors.As(err, &torn) || !errors.Is(err, record.ErrShort) || torn.validLen != end {
		t.Fatalf("scan of cut segment = %v, want a torn tail", err)
	}
	// A torn record followed by zeros is still torn, not the end.
	torn2 := append(bytes.Clone(data[:len(data)-3]), make([]byte, 100)...)
	if _, _, err := scanSegment(torn2, func(*record.Record, int, int) {}); !errors.As(err, &torn) {
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
		_, end, err := scanSegment(b, func(r *record.Record, off, n int) {
			if off != last || n <= 0 || off+n > len(b) {
				t.Fatalf("record at %d+%d after end %d of %d bytes", off, n, last, len(b))
			}
			last = off + n
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
