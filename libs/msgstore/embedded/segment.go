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
	segmentHeaderSize = len(segmentMagic) + 8
	segmentSuffix     = ".log"
)

// segment is one log file. The last segment is the active one that takes writes.
type segment struct {
	id   uint64
	f    *os.File
	size int64
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

// createSegment creates segment id durably: the header and the directory entry are
// synced before it is used.
func createSegment(dir string, id, nextSeq uint64) (*segment, error) {
	path := filepath.Join(dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	header := binary.BigEndian.AppendUint64([]byte(segmentMagic), nextSeq)
	if _, err := f.Write(header); err != nil {
		f.Close()
		return nil, fmt.Errorf("write segment header %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync segment %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return &segment{id: id, f: f, size: int64(len(header))}, nil
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
// its offset and length, in order. On a bad record it stops and returns an *errTornTail
// holding the length of the valid prefix; the caller decides whether that is a torn
// tail to cut or corruption. It never panics on any input.
func scanSegment(data []byte, fn func(r *record.Record, off, n int)) (firstSeq uint64, err error) {
	// Segments are created with their header synced before use, so a short header can
	// only be a crash during creation, while a wrong one is damage.
	if len(data) < segmentHeaderSize {
		return 0, &errTornTail{validLen: 0, cause: errors.New("short segment header")}
	}
	version := len(segmentMagic) - 1
	if string(data[:version]) != segmentMagic[:version] {
		return 0, fmt.Errorf("%w: not a msgstore segment", msgstore.ErrCorrupt)
	}
	if data[version] != segmentMagic[version] {
		return 0, fmt.Errorf("%w: unsupported segment version %d", msgstore.ErrCorrupt, data[version])
	}
	firstSeq = binary.BigEndian.Uint64(data[len(segmentMagic):])
	off := segmentHeaderSize
	for off < len(data) {
		r, n, err := record.Decode(data[off:])
		if err != nil {
			return firstSeq, &errTornTail{validLen: off, cause: err}
		}
		fn(&r, off, n)
		off += n
	}
	return firstSeq, nil
}
