package embedded

import (
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
	first, err := scanSegment(data, func(r *record.Record, off, n int) { types = append(types, r.Type) })
	if err != nil || first != 7 || len(types) != 5 {
		t.Fatalf("scan = first seq %d, %d records, %v", first, len(types), err)
	}
	_, err = scanSegment(data[:len(data)-3], func(*record.Record, int, int) {})
	var torn *errTornTail
	if !errors.As(err, &torn) || !errors.Is(err, record.ErrShort) {
		t.Fatalf("scan of cut segment = %v, want a torn tail", err)
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
		end := segmentHeaderSize
		_, err := scanSegment(b, func(r *record.Record, off, n int) {
			if off != end || n <= 0 || off+n > len(b) {
				t.Fatalf("record at %d+%d after end %d of %d bytes", off, n, end, len(b))
			}
			end = off + n
		})
		var torn *errTornTail
		switch {
		case err == nil:
			if end != len(b) {
				t.Fatalf("clean scan ended at %d of %d", end, len(b))
			}
		case errors.As(err, &torn):
			if torn.validLen != end && torn.validLen != 0 {
				t.Fatalf("torn tail at %d, last record ended at %d", torn.validLen, end)
			}
		case !errors.Is(err, msgstore.ErrCorrupt):
			t.Fatalf("unexpected error %v", err)
		}
	})
}
