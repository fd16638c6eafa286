// Package cql keeps the media service's uploads and blobs ([blobstore]) in Apache
// Cassandra or ScyllaDB, in the keyspace of the message store (msgstore/cql, whose
// Migrate creates these tables too); see docs/storage.md for the tables and why they are
// partitioned so.
//
// An upload is a partition of media_uploads: static columns hold its size, its committed
// (synced) size, the id of its data and, once committed, the digest it was committed as;
// one row per Append names the extent (position, length) and the writer that won it. The
// bytes are rows of media_chunks, partitioned by data id and 4 MiB part, so that no
// partition holds more than a part and one Append (5 MiB): a blob of a gigabyte spreads
// over 256 partitions and the whole cluster.
//
// An Append writes its chunk row first, under a random writer id, then claims the extent
// with one lightweight transaction conditional on the upload's size: of two Appends at
// the same offset exactly one wins, and the loser's chunk row, never named by an extent,
// is never read. Writes acknowledged by a quorum are durable (Cassandra's commit log),
// so Sync only records the committed size. Commit hashes the extents in order, writes
// them into the blob's partition of media_blobs and claims the digest with one
// lightweight transaction: the blob then owns the upload's chunk rows, which are not
// copied. A digest claimed before keeps its first owner, and the upload's chunk rows are
// dropped with the upload.
package cql

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/guardyn/guardyn/libs/blobstore"
	msgcql "github.com/guardyn/guardyn/libs/msgstore/cql"
)

// PartSize is the span of upload offsets one media_chunks partition holds: an Append is
// kept in the part of its first byte, so a partition holds at most PartSize plus one
// Append (blobstore.MaxAppendSize) of bytes that count, and a few MiB at most of chunks
// that lost a race and wait for the upload's deletion.
const PartSize = 4 << 20

// idSize is the size of data ids and writer ids.
const idSize = 16

// Store is a blobstore.Store on a CQL cluster.
type Store struct {
	sess   *gocql.Session
	owned  bool // Close closes sess
	closed atomic.Bool
}

var _ blobstore.Store = (*Store)(nil)

// Open connects to the cluster of c (the message store's address: one keyspace holds
// both) and checks its schema; see msgcql.Connect.
func Open(ctx context.Context, c msgcql.Config) (*Store, error) {
	sess, err := msgcql.Connect(ctx, c)
	if err != nil {
		return nil, err
	}
	return &Store{sess: sess, owned: true}, nil
}

// Close releases the connections; later calls fail with blobstore.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return blobstore.ErrClosed
	}
	if s.owned {
		s.sess.Close()
	}
	return nil
}

// Ready reports whether the cluster answers a query within ctx.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return blobstore.ErrClosed
	}
	var v string
	if err := s.sess.Query(`SELECT release_version FROM system.local`).ScanContext(ctx, &v); err != nil {
		return fmt.Errorf("cql: media store does not answer: %w", err)
	}
	return nil
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return blobstore.ErrClosed
	}
	return ctx.Err()
}

func newID() []byte {
	b := make([]byte, idSize)
	rand.Read(b)
	return b
}

func partOf(pos int64) int32 { return int32(pos / PartSize) }

// extent is one Append's bytes: where they start, how many, and which chunk row holds
// them.
type extent struct {
	pos    int64
	writer []byte
	len    int
}

// head is the static row of an upload.
type head struct {
	dataID      []byte
	size        int64
	synced      int64
	committedAs []byte
}

func (s *Store) readHead(ctx context.Context, id string, serial bool) (head, error) {
	var h head
	var size, synced *int64
	q := s.sess.Query(`SELECT data_id, size, synced, committed_as FROM media_uploads WHERE id = ? LIMIT 1`, id)
	if serial {
		q = q.Consistency(gocql.LocalSerial)
	}
	err := q.ScanContext(ctx, &h.dataID, &size, &synced, &h.committedAs)
	if errors.Is(err, gocql.ErrNotFound) || (err == nil && (size == nil || len(h.dataID) != idSize)) {
		return head{}, fmt.Errorf("cql: upload %s: %w", id, blobstore.ErrNotFound)
	}
	if err != nil {
		return head{}, fmt.Errorf("cql: upload %s: %w", id, err)
	}
	h.size = *size
	if synced != nil {
		h.synced = *synced
	}
	return h, nil
}

// CreateUpload starts an empty upload; see blobstore.Store.
func (s *Store) CreateUpload(ctx context.Context, id string) error {
	if err := blobstore.CheckUploadID(id); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	applied, err := s.sess.Query(`INSERT INTO media_uploads (id, data_id, size, synced) VALUES (?, ?, 0, 0) IF NOT EXISTS`,
		id, newID()).MapScanCASContext(ctx, map[string]any{})
	if err != nil {
		return fmt.Errorf("cql: create upload %s: %w", id, err)
	}
	if !applied {
		return fmt.Errorf("cql: create upload %s: %w", id, blobstore.ErrExists)
	}
	return nil
}

// Append writes data at offset; see blobstore.Store. It costs one read of the upload's
// head, one write of the chunk and one lightweight transaction.
func (s *Store) Append(ctx context.Context, id string, offset int64, data []byte) (int64, error) {
	if err := blobstore.CheckUploadID(id); err != nil {
		return 0, err
	}
	if len(data) == 0 || len(data) > blobstore.MaxAppendSize {
		return 0, fmt.Errorf("%w: append of %d bytes, want 1 to %d", blobstore.ErrInvalid, len(data), blobstore.MaxAppendSize)
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	h, err := s.readHead(ctx, id, false)
	if err != nil {
		return 0, err
	}
	if offset != h.size {
		return 0, &blobstore.OffsetError{Size: h.size, Got: offset}
	}
	writer := newID()
	if err := s.sess.Query(`INSERT INTO media_chunks (data_id, part, pos, writer, data) VALUES (?, ?, ?, ?, ?)`,
		h.dataID, partOf(offset), offset, writer, data).Idempotent(true).ExecContext(ctx); err != nil {
		return 0, fmt.Errorf("cql: append to upload %s: %w", id, err)
	}
	next := offset + int64(len(data))
	b := s.sess.Batch(gocql.UnloggedBatch)
	b.Query(`UPDATE media_uploads SET size = ? WHERE id = ? IF size = ?`, next, id, offset)
	b.Query(`INSERT INTO media_uploads (id, pos, writer, len) VALUES (?, ?, ?, ?)`, id, offset, writer, len(data))
	cur := map[string]any{}
	applied, iter, err := b.MapExecCASContext(ctx, cur)
	if iter != nil {
		iter.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("cql: append to upload %s: claim extent at %d: %w", id, offset, err)
	}
	if applied {
		return next, nil
	}
	// Another Append won this offset, or the upload is gone: drop the chunk row no
	// extent will name.
	s.sess.Query(`DELETE FROM media_chunks WHERE data_id = ? AND part = ? AND pos = ? AND writer = ?`,
		h.dataID, partOf(offset), offset, writer).ExecContext(context.WithoutCancel(ctx))
	size, ok := cur["size"].(int64)
	if !ok {
		return 0, fmt.Errorf("cql: upload %s: %w", id, blobstore.ErrNotFound)
	}
	return 0, &blobstore.OffsetError{Size: size, Got: offset}
}

// Sync records the committed size; see blobstore.Store. Every Append that returned is
// on a quorum's commit log already.
func (s *Store) Sync(ctx context.Context, id string) (int64, error) {
	if err := blobstore.CheckUploadID(id); err != nil {
		return 0, err
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	h, err := s.readHead(ctx, id, true)
	if err != nil {
		return 0, err
	}
	if h.synced >= h.size {
		return h.synced, nil
	}
	cur := map[string]any{}
	applied, err := s.sess.Query(`UPDATE media_uploads SET synced = ? WHERE id = ? IF synced < ?`, h.size, id, h.size).
		MapScanCASContext(ctx, cur)
	if err != nil {
		return 0, fmt.Errorf("cql: sync upload %s: %w", id, err)
	}
	if applied {
		return h.size, nil
	}
	// A concurrent Sync recorded as much or more, or the upload is gone.
	synced, ok := cur["synced"].(int64)
	if !ok {
		return 0, fmt.Errorf("cql: upload %s: %w", id, blobstore.ErrNotFound)
	}
	return synced, nil
}

// UploadSize returns the committed size; see blobstore.Store.
func (s *Store) UploadSize(ctx context.Context, id string) (int64, error) {
	if err := blobstore.CheckUploadID(id); err != nil {
		return 0, err
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	h, err := s.readHead(ctx, id, false)
	if err != nil {
		return 0, err
	}
	return h.synced, nil
}

// uploadExtents lists the extents of upload id that end at or before size, in order,
// and checks that they cover it without a gap.
func (s *Store) uploadExtents(ctx context.Context, id string, size int64) ([]extent, error) {
	iter := s.sess.Query(`SELECT pos, writer, len FROM media_uploads WHERE id = ?`, id).PageSize(1000).IterContext(ctx)
	var exts []extent
	var e extent
	at := int64(0)
	for iter.Scan(&e.pos, &e.writer, &e.len) {
		if e.writer == nil {
			continue // the static row of an upload without extents
		}
		if e.pos+int64(e.len) > size {
			continue // appended after the Sync this reads up to
		}
		if e.pos != at {
			iter.Close()
			return nil, fmt.Errorf("cql: upload %s: extent at %d, want %d: data lost", id, e.pos, at)
		}
		exts = append(exts, e)
		at += int64(e.len)
		e = extent{}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cql: upload %s: list extents: %w", id, err)
	}
	if at != size {
		return nil, fmt.Errorf("cql: upload %s: extents end at %d of %d bytes: data lost", id, at, size)
	}
	return exts, nil
}

func (s *Store) readChunk(ctx context.Context, dataID []byte, e extent) ([]byte, error) {
	var data []byte
	err := s.sess.Query(`SELECT data FROM media_chunks WHERE data_id = ? AND part = ? AND pos = ? AND writer = ?`,
		dataID, partOf(e.pos), e.pos, e.writer).ScanContext(ctx, &data)
	if errors.Is(err, gocql.ErrNotFound) || (err == nil && len(data) != e.len) {
		return nil, fmt.Errorf("cql: chunk at %d of %d bytes is missing or short (%d bytes)", e.pos, e.len, len(data))
	}
	return data, err
}

// Commit hashes upload id and makes it blob want; see blobstore.Store. The blob takes
// over the upload's chunk rows: nothing is copied.
func (s *Store) Commit(ctx context.Context, id string, want blobstore.Digest) (int64, error) {
	size, err := s.Sync(ctx, id)
	if err != nil {
		return 0, err
	}
	h, err := s.readHead(ctx, id, false)
	if err != nil {
		return 0, err
	}
	exts, err := s.uploadExtents(ctx, id, size)
	if err != nil {
		return 0, err
	}
	hash := sha256.New()
	for _, e := range exts {
		data, err := s.readChunk(ctx, h.dataID, e)
		if err != nil {
			return 0, fmt.Errorf("cql: commit upload %s: %w", id, err)
		}
		hash.Write(data)
	}
	if blobstore.Digest(hash.Sum(nil)) != want {
		return 0, fmt.Errorf("cql: commit upload %s as %s: %w", id, want, blobstore.ErrHashMismatch)
	}
	owner, _, err := s.blobHead(ctx, want)
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return 0, err
	}
	if owner != nil {
		return size, nil // this upload's Commit again, or the same bytes uploaded before
	}
	// The upload names the digest before the blob takes its chunks, so that a
	// DeleteUpload after a crash in between, finding no blob that owns them, drops them.
	if err := s.sess.Query(`UPDATE media_uploads SET committed_as = ? WHERE id = ?`, want[:], id).ExecContext(ctx); err != nil {
		return 0, fmt.Errorf("cql: commit upload %s: %w", id, err)
	}
	// The extents go into the blob's partition under this data id, where a concurrent
	// Commit of the same bytes from another upload writes its own; the claim below picks
	// one owner, whose rows Open reads.
	b := s.sess.Batch(gocql.UnloggedBatch)
	for _, e := range exts {
		b.Query(`INSERT INTO media_blobs (digest, data_id, pos, writer, len) VALUES (?, ?, ?, ?, ?)`, want[:], h.dataID, e.pos, e.writer, e.len)
		if b.Size() == 100 {
			if err := b.ExecContext(ctx); err != nil {
				return 0, fmt.Errorf("cql: commit upload %s: write extents: %w", id, err)
			}
			b = s.sess.Batch(gocql.UnloggedBatch)
		}
	}
	if b.Size() > 0 {
		if err := b.ExecContext(ctx); err != nil {
			return 0, fmt.Errorf("cql: commit upload %s: write extents: %w", id, err)
		}
	}
	if _, err := s.sess.Query(`UPDATE media_blobs SET owner = ?, size = ? WHERE digest = ? IF owner = null`, h.dataID, size, want[:]).
		MapScanCASContext(ctx, map[string]any{}); err != nil {
		return 0, fmt.Errorf("cql: commit upload %s: claim blob %s: %w", id, want, err)
	}
	// Not applied: another upload of the same bytes claimed it first, and keeps it.
	return size, nil
}

// blobHead reads a blob's owner (its data id) and size.
func (s *Store) blobHead(ctx context.Context, d blobstore.Digest) ([]byte, int64, error) {
	var owner []byte
	var size *int64
	err := s.sess.Query(`SELECT owner, size FROM media_blobs WHERE digest = ? LIMIT 1`, d[:]).ScanContext(ctx, &owner, &size)
	if errors.Is(err, gocql.ErrNotFound) || (err == nil && (len(owner) != idSize || size == nil)) {
		return nil, 0, fmt.Errorf("cql: blob %s: %w", d, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cql: blob %s: %w", d, err)
	}
	return owner, *size, nil
}

// deleteChunks drops the chunk partitions of a data id up to the part of size.
func (s *Store) deleteChunks(ctx context.Context, dataID []byte, size int64) error {
	for p := int32(0); p <= partOf(size); p++ {
		if err := s.sess.Query(`DELETE FROM media_chunks WHERE data_id = ? AND part = ?`, dataID, p).
			Idempotent(true).ExecContext(ctx); err != nil {
			return err
		}
	}
	return nil
}

// tombstoneTime is a timestamp for deleting a partition whose rows lightweight
// transactions wrote, with their ballots' timestamps, which may be ahead of this clock.
func tombstoneTime(latest int64) int64 { return max(time.Now().UnixMicro(), latest+1) }

// DeleteUpload drops upload id and, unless a blob owns them, its bytes; see
// blobstore.Store.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	if err := blobstore.CheckUploadID(id); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	h, err := s.readHead(ctx, id, false)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	owned := false
	if len(h.committedAs) == len(blobstore.Digest{}) {
		owner, _, err := s.blobHead(ctx, blobstore.Digest(h.committedAs))
		if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
			return err
		}
		owned = string(owner) == string(h.dataID)
	}
	if !owned {
		if err := s.deleteChunks(ctx, h.dataID, h.size); err != nil {
			return fmt.Errorf("cql: delete upload %s: %w", id, err)
		}
	}
	var wSize, wSynced *int64
	if err := s.sess.Query(`SELECT WRITETIME(size), WRITETIME(synced) FROM media_uploads WHERE id = ? LIMIT 1`, id).
		ScanContext(ctx, &wSize, &wSynced); err != nil && !errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("cql: delete upload %s: %w", id, err)
	}
	latest := int64(0)
	for _, w := range []*int64{wSize, wSynced} {
		if w != nil {
			latest = max(latest, *w)
		}
	}
	if err := s.sess.Query(`DELETE FROM media_uploads USING TIMESTAMP ? WHERE id = ?`, tombstoneTime(latest), id).
		ExecContext(ctx); err != nil {
		return fmt.Errorf("cql: delete upload %s: %w", id, err)
	}
	return nil
}

// Open returns blob d; see blobstore.Store. It reads the blob's extents, and its chunks
// as ReadAt needs them.
func (s *Store) Open(ctx context.Context, d blobstore.Digest) (blobstore.Blob, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	owner, size, err := s.blobHead(ctx, d)
	if err != nil {
		return nil, err
	}
	iter := s.sess.Query(`SELECT pos, writer, len FROM media_blobs WHERE digest = ? AND data_id = ?`, d[:], owner).
		PageSize(1000).IterContext(ctx)
	var exts []extent
	var e extent
	at := int64(0)
	for iter.Scan(&e.pos, &e.writer, &e.len) {
		if e.writer == nil {
			continue
		}
		if e.pos != at {
			iter.Close()
			return nil, fmt.Errorf("cql: blob %s: extent at %d, want %d: data lost", d, e.pos, at)
		}
		exts = append(exts, e)
		at += int64(e.len)
		e = extent{}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cql: open blob %s: %w", d, err)
	}
	if at != size {
		return nil, fmt.Errorf("cql: blob %s: extents end at %d of %d bytes: data lost", d, at, size)
	}
	return &blob{s: s, digest: d, dataID: owner, exts: exts, size: size}, nil
}

// blob is an open blob. It keeps the last chunk it read, as readers go through a blob
// in pieces much smaller than a chunk.
type blob struct {
	s      *Store
	digest blobstore.Digest
	dataID []byte
	exts   []extent
	size   int64

	mu      sync.Mutex
	lastPos int64
	last    []byte
}

func (b *blob) Size() int64  { return b.size }
func (b *blob) Close() error { return nil }

func (b *blob) chunk(i int) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.exts[i]
	if b.last != nil && b.lastPos == e.pos {
		return b.last, nil
	}
	data, err := b.s.readChunk(context.Background(), b.dataID, e)
	if err != nil {
		return nil, fmt.Errorf("cql: read blob %s: %w", b.digest, err)
	}
	b.last, b.lastPos = data, e.pos
	return data, nil
}

// ReadAt follows io.ReaderAt.
func (b *blob) ReadAt(p []byte, off int64) (int, error) {
	if b.s.closed.Load() {
		return 0, blobstore.ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", blobstore.ErrInvalid, off)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	n := 0
	i := sort.Search(len(b.exts), func(i int) bool { return b.exts[i].pos+int64(b.exts[i].len) > off })
	for ; n < len(p) && i < len(b.exts); i++ {
		data, err := b.chunk(i)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[off+int64(n)-b.exts[i].pos:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Delete drops blob d and its bytes; see blobstore.Store. Its chunk rows go first, then
// its partition, so that a crash in between leaves a blob that fails to read rather
// than rows no blob names.
func (s *Store) Delete(ctx context.Context, d blobstore.Digest) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	owner, size, err := s.blobHead(ctx, d)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.deleteChunks(ctx, owner, size); err != nil {
		return fmt.Errorf("cql: delete blob %s: %w", d, err)
	}
	var w *int64
	if err := s.sess.Query(`SELECT WRITETIME(owner) FROM media_blobs WHERE digest = ? LIMIT 1`, d[:]).
		ScanContext(ctx, &w); err != nil && !errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("cql: delete blob %s: %w", d, err)
	}
	latest := int64(0)
	if w != nil {
		latest = *w
	}
	if err := s.sess.Query(`DELETE FROM media_blobs USING TIMESTAMP ? WHERE digest = ?`, tombstoneTime(latest), d[:]).
		ExecContext(ctx); err != nil {
		return fmt.Errorf("cql: delete blob %s: %w", d, err)
	}
	return nil
}
