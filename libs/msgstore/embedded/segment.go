package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded/internal/record"
)

// A segment file starts with segmentMagic (whose last byte is the format version) and
// the sequence number the store would assign next when the segment was created, so
// sequence numbers never go backwards even after every message was compacted away.
const (
	segmentMagic      = "GDYNMSG\x01"
	segmentHeaderSize = 16 // magic and next sequence number
	segmentSuffix     = ".log"
)

// segment is one log file. The last segment is the active one that takes writes.
//
// Segments are created filled with zeros up to the segment size, so appends overwrite
// allocated blocks and a commit needs only fdatasync, which on ext4 and xfs skips the
// journal commit that growing a file costs on every fsync. Zeros after the last record
// are therefore the normal end of a segment.
type segment struct {
	id uint64
	f  *os.File
	// size is where the next record goes; alloc is the file size, larger while the
	// preallocated zeros are not used up.
	size, alloc int64
	// live counts the bytes of records still referenced by the index; compaction
	// compares it with size.
	live int64
}

func segmentName(id uint64) string {
	return fmt.Sprintf("%016x%s", id, segmentSuffix)
}

// listSegments returns the ids of the segment files in dir, in order.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 64)
		if err != nil || len(name) != 16 {
			return nil, fmt.Errorf("%w: unexpected file %s in %s", msgstore.ErrCorrupt, e.Name(), dir)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// createSegment creates segment id durably, zero-filled to prealloc bytes: the header,
// the zeros and the directory entry are synced before it is used.
func createSegment(dir string, id, nextSeq uint64, prealloc int64) (*segment, error) {
	path := filepath.Join(dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	seg := &segment{id: id, f: f, size: segmentHeaderSize, alloc: max(prealloc, segmentHeaderSize)}
	if err := createSegmentFile(dir, seg, nextSeq); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return seg, nil
}

func createSegmentFile(dir string, seg *segment, nextSeq uint64) error {
	if err := writeHeader(seg, nextSeq); err != nil {
		return err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(segmentHeaderSize); off < seg.alloc; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), seg.alloc-off)
		if _, err := seg.f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("preallocate segment %d: %w", seg.id, err)
		}
	}
	if err := seg.f.Sync(); err != nil {
		return fmt.Errorf("sync segment %d: %w", seg.id, err)
	}
	return syncDir(dir)
}

// writeHeader writes the segment header with the next sequence number to assign.
func writeHeader(seg *segment, nextSeq uint64) error {
	header := binary.BigEndian.AppendUint64([]byte(segmentMagic), nextSeq)
	if _, err := seg.f.WriteAt(header, 0); err != nil {
		return fmt.Errorf("write header of segment %d: %w", seg.id, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// errTornTail reports where the valid prefix of a segment ends.
type errTornTail struct {
	validLen int
	cause    error
}

func (e *errTornTail) Error() string {
	return fmt.Sprintf("bad record at offset %d: %v", e.validLen, e.cause)
}

func (e *errTornTail) Unwrap() error { return e.cause }

// scanSegment checks the header of a segment's bytes and calls fn for each record with
// its offset and length, in order, stopping at the first error fn returns. It returns
// where the records end: at the end of data or where only zeros follow. On a bad record
// it stops and returns an *errTornTail holding that offset; the caller decides whether
// that is a torn tail to cut or corruption. It never panics on any input.
func scanSegment(data []byte, fn func(r *record.Record, off, n int) error) (firstSeq uint64, end int, err error) {
	// Segments are created with their header synced before use, so a short or zeroed
	// header can only be a crash during creation, while a wrong one is damage.
	if len(data) < segmentHeaderSize {
		return 0, 0, &errTornTail{validLen: 0, cause: errors.New("short segment header")}
	}
	// The directory entry of a segment being created can become durable before its
	// contents, through a directory sync made meanwhile by compaction: a crash then
	// leaves zeros where the header goes. Such a segment never held a record.
	if allZero(data[:segmentHeaderSize]) {
		return 0, 0, &errTornTail{validLen: 0, cause: errors.New("segment header never written")}
	}
	version := len(segmentMagic) - 1
	if string(data[:version]) != segmentMagic[:version] {
		return 0, 0, fmt.Errorf("%w: not a msgstore segment", msgstore.ErrCorrupt)
	}
	if data[version] != segmentMagic[version] {
		return 0, 0, fmt.Errorf("%w: unsupported segment version %d", msgstore.ErrCorrupt, data[version])
	}
	firstSeq = binary.BigEndian.Uint64(data[len(segmentMagic):])
	off := segmentHeaderSize
	for off < len(data) {
		r, n, err := record.Decode(data[off:])
		if err != nil {
			if allZero(data[off:]) {
				break
			}
			return firstSeq, off, &errTornTail{validLen: off, cause: err}
		}
		if err := fn(&r, off, n); err != nil {
			return firstSeq, off, err
		}
		off += n
	}
	return firstSeq, off, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
