// Package media is Guardyn's store for encrypted attachments: resumable chunked uploads of
// ciphertext that clients encrypted before upload (libs/crypto/filecrypt), blobs named by
// the SHA-256 of that ciphertext, ranged downloads, and capability tokens that let the
// recipients of a message download what the sender owns. The decryption key travels
// inside the end-to-end encrypted message, never through this service. The API is
// proto/guardyn/media/v1; storage and expiry are described in docs/storage.md.
package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/blobstore"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/server"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
)

// Defaults for Config fields left zero.
const (
	// DefaultMaxBlobSize bounds one upload: 100 MiB, as the API documents.
	DefaultMaxBlobSize = 100 << 20
	// DefaultStorageQuota bounds what one account stores at once (blobs it owns and
	// uploads it has open).
	DefaultStorageQuota = 2 << 30
	// DefaultDailyQuota bounds the bytes one account declares for upload per UTC day.
	DefaultDailyQuota = 4 << 30
	// DefaultMaxOpenUploads bounds the unfinished uploads of one account.
	DefaultMaxOpenUploads = 16
	// DefaultUploadTTL is how long an unfinished upload may take.
	DefaultUploadTTL = 24 * time.Hour
	// DefaultBlobLease is how long a blob is kept after its upload or its last
	// capability: as long as a message that references it waits in an inbox.
	DefaultBlobLease = 30 * 24 * time.Hour
	// MaxCapabilityTTL is the longest capability the API grants.
	MaxCapabilityTTL = 30 * 24 * time.Hour
	// MaxChunkSize is the largest chunk the API accepts.
	MaxChunkSize = blobstore.MaxAppendSize
	// downloadChunk is the size of each DownloadResponse.
	downloadChunk = 1 << 20
	// DefaultSyncEvery is how many bytes an upload stream appends between syncs. Every
	// committed offset the service reports is synced first (at the end of a stream, and by
	// GetUploadStatus); between reports a sync per 16 MiB instead of per chunk lets an
	// upload run near the disk's sequential speed (docs/perf-media.md).
	DefaultSyncEvery = 16 << 20
)

// Limiter rate-limits by key; Allow reports whether one more event may happen now, AllowN
// whether an amount n (bytes) may pass now.
type Limiter interface {
	Allow(key string) bool
	AllowN(key string, n int) bool
}

// Config holds the dependencies of a Server.
type Config struct {
	// Records holds uploads, ownership, quotas and capabilities (keys under "media/").
	Records kv.Store
	// Blobs holds the ciphertext.
	Blobs blobstore.Store
	// CapabilityKey MACs capability tokens; CapabilityKeySize random bytes that survive
	// restarts (config.LoadOrCreateSecret).
	CapabilityKey []byte

	Limits Limiter // optional
	Now    func() time.Time
	Logger *slog.Logger

	MaxBlobSize    int64
	StorageQuota   int64
	DailyQuota     int64
	MaxOpenUploads int
	UploadTTL      time.Duration
	BlobLease      time.Duration
	// SyncEvery: see DefaultSyncEvery; 1 syncs after every chunk.
	SyncEvery int
}

// Server implements mediav1.MediaServiceServer.
type Server struct {
	mediav1.UnimplementedMediaServiceServer

	records kv.Store
	blobs   blobstore.Store
	capKey  []byte
	limits  Limiter
	now     func() time.Time
	log     *slog.Logger
	cfg     Config

	// blobLocks serialize, per blob (by its first byte), a completion that adds an owner
	// with the deletion of the blob's bytes when its last owner left: otherwise the bytes
	// a new owner just committed could be deleted under it.
	blobLocks [64]sync.Mutex
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Records == nil || cfg.Blobs == nil {
		return nil, errors.New("media: config needs Records and Blobs")
	}
	if len(cfg.CapabilityKey) != CapabilityKeySize {
		return nil, fmt.Errorf("media: capability key must be %d bytes", CapabilityKeySize)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MaxBlobSize, DefaultMaxBlobSize)
	def(&cfg.StorageQuota, DefaultStorageQuota)
	def(&cfg.DailyQuota, DefaultDailyQuota)
	if cfg.MaxOpenUploads == 0 {
		cfg.MaxOpenUploads = DefaultMaxOpenUploads
	}
	if cfg.UploadTTL == 0 {
		cfg.UploadTTL = DefaultUploadTTL
	}
	if cfg.BlobLease == 0 {
		cfg.BlobLease = DefaultBlobLease
	}
	if cfg.SyncEvery == 0 {
		cfg.SyncEvery = DefaultSyncEvery
	}
	return &Server{
		records: cfg.Records, blobs: cfg.Blobs, capKey: append([]byte(nil), cfg.CapabilityKey...),
		limits: cfg.Limits, now: cfg.Now, log: cfg.Logger, cfg: cfg,
	}, nil
}

func (s *Server) blobLock(d blobstore.Digest) *sync.Mutex { return &s.blobLocks[d[0]%64] }

func caller(ctx context.Context) (authn.Principal, error) {
	p, ok := authn.FromContext(ctx)
	if !ok {
		return p, server.Error(codes.Unauthenticated, reasonTokenMissing, "missing access token")
	}
	return p, nil
}

// begin authenticates the caller and applies the request rate limit.
func (s *Server) begin(ctx context.Context) (authn.Principal, error) {
	p, err := caller(ctx)
	if err != nil {
		return p, err
	}
	if s.limits != nil && !s.limits.Allow("media|"+p.UserID) {
		return p, server.Error(codes.ResourceExhausted, reasonRateLimited, "too many media requests; retry later")
	}
	return p, nil
}

func (s *Server) allowBytes(action, user string, n int) error {
	if s.limits == nil || s.limits.AllowN(action+"|"+user, n) {
		return nil
	}
	return server.Error(codes.ResourceExhausted, reasonRateLimited, "%s too fast; retry later", action)
}

// internal logs err and returns an Internal status that does not leak it.
func (s *Server) internal(ctx context.Context, op string, err error) error {
	if errors.Is(err, kv.ErrUnavailable) {
		s.log.Warn("media: "+op+": store unavailable", "err", err)
		return server.Error(codes.Unavailable, server.ReasonStoreUnavailable, "%s: store unavailable; retry", op)
	}
	if ctx.Err() != nil {
		return server.Error(codes.Canceled, "CANCELED", "%s: %v", op, ctx.Err())
	}
	s.log.Error("media: "+op, "err", err)
	return server.Error(codes.Internal, server.ReasonInternal, "%s failed", op)
}

// errStatus is a status decided inside a transaction, returned unchanged.
type errStatus struct{ err error }

func (e errStatus) Error() string { return e.err.Error() }

func abort(code codes.Code, reason, format string, args ...any) error {
	return errStatus{server.Error(code, reason, format, args...)}
}

// finish turns a transaction's error into the RPC's.
func (s *Server) finish(ctx context.Context, op string, err error) error {
	var st errStatus
	if errors.As(err, &st) {
		return st.err
	}
	if err != nil {
		return s.internal(ctx, op, err)
	}
	return nil
}

func (s *Server) CreateUpload(ctx context.Context, req *mediav1.CreateUploadRequest) (*mediav1.CreateUploadResponse, error) {
	p, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	total := req.GetTotalSize()
	if total == 0 || total > uint64(s.cfg.MaxBlobSize) {
		return nil, server.Error(codes.InvalidArgument, reasonUploadTooLarge, "total_size must be 1 to %d bytes, got %d", s.cfg.MaxBlobSize, total)
	}
	if c := req.GetChunkSize(); c == 0 || c > MaxChunkSize {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "chunk_size must be 1 to %d bytes, got %d", MaxChunkSize, c)
	}
	var raw [16]byte
	rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	now := s.now()
	rec := uploadRec{Owner: p.UserID, Total: int64(total), Chunk: int(req.GetChunkSize()), Expires: now.Add(s.cfg.UploadTTL)}
	err = s.records.Update(ctx, func(tx kv.Tx) error {
		q, err := quota(tx, p.UserID, now)
		if err != nil {
			return err
		}
		switch {
		case q.Open >= s.cfg.MaxOpenUploads:
			return abort(codes.ResourceExhausted, reasonQuotaExceeded, "%d unfinished uploads already; complete or let them expire", q.Open)
		case q.Stored+rec.Total > s.cfg.StorageQuota:
			return abort(codes.ResourceExhausted, reasonQuotaExceeded, "storage quota of %d bytes would be exceeded (%d stored)", s.cfg.StorageQuota, q.Stored)
		case q.DayBytes+rec.Total > s.cfg.DailyQuota:
			return abort(codes.ResourceExhausted, reasonQuotaExceeded, "daily upload quota of %d bytes would be exceeded (%d today)", s.cfg.DailyQuota, q.DayBytes)
		}
		q.Open++
		q.Stored += rec.Total
		q.DayBytes += rec.Total
		if err := put(tx, quotaKey(p.UserID), q); err != nil {
			return err
		}
		if err := put(tx, uploadKey(id), rec); err != nil {
			return err
		}
		return tx.Put(expKey(rec.Expires, expUpload, id), nil)
	})
	if err := s.finish(ctx, "create upload", err); err != nil {
		return nil, err
	}
	// The record comes first: if this fails, the sweep releases the reservation when the
	// upload expires.
	if err := s.blobs.CreateUpload(ctx, id); err != nil {
		return nil, s.internal(ctx, "create upload", err)
	}
	return &mediav1.CreateUploadResponse{UploadId: id, ExpiresAt: timestamppb.New(rec.Expires)}, nil
}

// upload returns the caller's upload id. Someone else's upload, an expired one and a
// missing one are all UPLOAD_NOT_FOUND: ids are not to be probed.
func (s *Server) upload(ctx context.Context, user, id string) (uploadRec, error) {
	var rec uploadRec
	if blobstore.CheckUploadID(id) != nil {
		return rec, server.Error(codes.NotFound, reasonUploadNotFound, "no upload %q", id)
	}
	var found bool
	err := s.records.View(ctx, func(tx kv.Tx) (err error) {
		found, err = get(tx, uploadKey(id), &rec)
		return err
	})
	if err != nil {
		return rec, s.internal(ctx, "read upload", err)
	}
	if !found || rec.Owner != user || !s.now().Before(rec.Expires) {
		return rec, server.Error(codes.NotFound, reasonUploadNotFound, "no upload %q for the caller", id)
	}
	return rec, nil
}

func (s *Server) UploadChunks(stream grpc.ClientStreamingServer[mediav1.UploadChunksRequest, mediav1.UploadChunksResponse]) error {
	ctx := stream.Context()
	p, err := s.begin(ctx)
	if err != nil {
		return err
	}
	var (
		id       string
		rec      uploadRec
		unsynced int
	)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if id == "" {
				return server.Error(codes.InvalidArgument, reasonMalformedRequest, "no chunk on the stream")
			}
			committed, err := s.blobs.Sync(ctx, id)
			if err != nil {
				return s.internal(ctx, "sync upload", err)
			}
			return stream.SendAndClose(&mediav1.UploadChunksResponse{CommittedOffset: uint64(committed)})
		}
		if err != nil {
			return err
		}
		if id == "" {
			id = req.GetUploadId()
			if rec, err = s.upload(ctx, p.UserID, id); err != nil {
				return err
			}
			if rec.Blob != "" {
				return server.Error(codes.FailedPrecondition, reasonUploadCompleted, "upload %s is completed", id)
			}
		} else if req.GetUploadId() != id {
			return server.Error(codes.InvalidArgument, reasonMalformedRequest, "upload_id changed on the stream")
		}
		data, off := req.GetData(), req.GetOffset()
		if len(data) == 0 || len(data) > rec.Chunk {
			return server.Error(codes.InvalidArgument, reasonMalformedRequest, "chunk of %d bytes, want 1 to %d (the upload's chunk size)", len(data), rec.Chunk)
		}
		if off > uint64(rec.Total) || uint64(len(data)) > uint64(rec.Total)-off {
			return server.Error(codes.InvalidArgument, reasonUploadTooLarge, "chunk at %d of %d bytes goes past the declared size %d", off, len(data), rec.Total)
		}
		if err := s.allowBytes("media-upload", p.UserID, len(data)); err != nil {
			return err
		}
		_, err = s.blobs.Append(ctx, id, int64(off), data)
		var oe *blobstore.OffsetError
		switch {
		case errors.As(err, &oe):
			return server.Error(codes.FailedPrecondition, reasonOffsetMismatch, "chunk at offset %d, the upload has %d bytes (GetUploadStatus says how many are committed)", off, oe.Size)
		case errors.Is(err, blobstore.ErrNotFound):
			// Completed (its bytes became a blob) or expired since the stream began.
			if rec, err := s.upload(ctx, p.UserID, id); err == nil && rec.Blob != "" {
				return server.Error(codes.FailedPrecondition, reasonUploadCompleted, "upload %s is completed", id)
			}
			return server.Error(codes.NotFound, reasonUploadNotFound, "no upload %q for the caller", id)
		case err != nil:
			return s.internal(ctx, "append chunk", err)
		}
		if unsynced += len(data); unsynced >= s.cfg.SyncEvery {
			if _, err := s.blobs.Sync(ctx, id); err != nil {
				return s.internal(ctx, "sync upload", err)
			}
			unsynced = 0
		}
	}
}

func (s *Server) GetUploadStatus(ctx context.Context, req *mediav1.GetUploadStatusRequest) (*mediav1.GetUploadStatusResponse, error) {
	p, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	rec, err := s.upload(ctx, p.UserID, req.GetUploadId())
	if err != nil {
		return nil, err
	}
	committed := rec.Total
	if rec.Blob == "" {
		// What was appended is reported only once it is durable.
		if committed, err = s.blobs.Sync(ctx, req.GetUploadId()); err != nil {
			return nil, s.internal(ctx, "upload status", err)
		}
	}
	return &mediav1.GetUploadStatusResponse{CommittedOffset: uint64(committed), TotalSize: uint64(rec.Total), ExpiresAt: timestamppb.New(rec.Expires)}, nil
}

func (s *Server) CompleteUpload(ctx context.Context, req *mediav1.CompleteUploadRequest) (*mediav1.CompleteUploadResponse, error) {
	p, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetSha256()) != len(blobstore.Digest{}) {
		return nil, server.Error(codes.InvalidArgument, server.ReasonLimitExceeded, "sha256 must be 32 bytes, got %d", len(req.GetSha256()))
	}
	want := blobstore.Digest(req.GetSha256())
	id := req.GetUploadId()
	rec, err := s.upload(ctx, p.UserID, id)
	if err != nil {
		return nil, err
	}
	if rec.Blob != "" {
		if rec.Blob != want.String() {
			return nil, server.Error(codes.InvalidArgument, reasonHashMismatch, "upload %s was completed as another blob", id)
		}
		return &mediav1.CompleteUploadResponse{BlobId: rec.Blob}, nil
	}
	committed, err := s.blobs.Sync(ctx, id)
	if err != nil {
		return nil, s.internal(ctx, "complete upload", err)
	}
	if committed != rec.Total {
		return nil, server.Error(codes.FailedPrecondition, reasonUploadIncomplete, "%d of %d bytes committed", committed, rec.Total)
	}
	mu := s.blobLock(want)
	mu.Lock()
	defer mu.Unlock()
	if _, err := s.blobs.Commit(ctx, id, want); errors.Is(err, blobstore.ErrHashMismatch) {
		return nil, server.Error(codes.InvalidArgument, reasonHashMismatch, "the uploaded bytes do not hash to the given sha256")
	} else if err != nil {
		return nil, s.internal(ctx, "complete upload", err)
	}
	blob := want.String()
	now := s.now()
	err = s.records.Update(ctx, func(tx kv.Tx) error {
		var cur uploadRec
		if found, err := get(tx, uploadKey(id), &cur); err != nil {
			return err
		} else if !found || cur.Blob != "" {
			return abort(codes.NotFound, reasonUploadNotFound, "upload %s ended meanwhile", id)
		}
		cur.Blob = blob
		if err := put(tx, uploadKey(id), cur); err != nil {
			return err
		}
		q, err := quota(tx, p.UserID, now)
		if err != nil {
			return err
		}
		q.Open = max(q.Open-1, 0)
		var o ownRec
		owned, err := get(tx, ownKey(blob, p.UserID), &o)
		if err != nil {
			return err
		}
		if owned {
			// The same bytes again: the reservation is not charged twice; the lease is renewed.
			q.Stored = max(q.Stored-rec.Total, 0)
			if err := tx.Delete(expKey(o.Lease, expLease, blob+"/"+p.UserID)); err != nil {
				return err
			}
		} else {
			o = ownRec{Size: rec.Total, Since: now}
		}
		o.Lease = later(o.Lease, now.Add(s.cfg.BlobLease))
		if err := put(tx, quotaKey(p.UserID), q); err != nil {
			return err
		}
		if err := put(tx, ownKey(blob, p.UserID), o); err != nil {
			return err
		}
		if err := tx.Put(expKey(o.Lease, expLease, blob+"/"+p.UserID), nil); err != nil {
			return err
		}
		return tx.Delete(gcKey(blob))
	})
	if err := s.finish(ctx, "complete upload", err); err != nil {
		return nil, err
	}
	// The blob has its own name for the bytes now.
	if err := s.blobs.DeleteUpload(ctx, id); err != nil {
		s.log.Warn("media: drop completed upload", "err", err)
	}
	return &mediav1.CompleteUploadResponse{BlobId: blob}, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// authorizeRead checks that the caller may read blob: as a current owner, or with a valid
// capability. Someone who may not read it learns nothing about whether it exists.
func (s *Server) authorizeRead(ctx context.Context, user string, d blobstore.Digest, token []byte) error {
	blob := d.String()
	now := s.now()
	if len(token) == 0 {
		var o ownRec
		var found bool
		err := s.records.View(ctx, func(tx kv.Tx) (err error) {
			found, err = get(tx, ownKey(blob, user), &o)
			return err
		})
		if err != nil {
			return s.internal(ctx, "read blob", err)
		}
		if !found || !now.Before(o.Lease) {
			return server.Error(codes.NotFound, reasonBlobNotFound, "no blob %s for the caller", blob)
		}
		return nil
	}
	c, err := parseCapability(token, s.capKey)
	switch {
	case err != nil:
		return server.Error(codes.PermissionDenied, reasonCapabilityInvalid, "capability is malformed or forged")
	case c.Blob != d:
		return server.Error(codes.PermissionDenied, reasonCapabilityInvalid, "capability is for another blob")
	case c.Audience != "" && c.Audience != user:
		return server.Error(codes.PermissionDenied, reasonCapabilityInvalid, "capability is for another audience")
	case !now.Before(c.Expires):
		return server.Error(codes.PermissionDenied, reasonCapabilityExpired, "capability expired at %s", c.Expires.UTC().Format(time.RFC3339))
	}
	var live bool
	err = s.records.View(ctx, func(tx kv.Tx) error {
		var cr capRec
		found, err := get(tx, capKey(c.ID), &cr)
		if err != nil || !found {
			return err
		}
		var o ownRec
		owned, err := get(tx, ownKey(blob, c.Owner), &o)
		live = owned && o.Since.Equal(cr.Since) && now.Before(o.Lease)
		return err
	})
	if err != nil {
		return s.internal(ctx, "check capability", err)
	}
	if !live {
		return server.Error(codes.PermissionDenied, reasonCapabilityRevoked, "capability was revoked or its blob deleted")
	}
	return nil
}

func (s *Server) Download(req *mediav1.DownloadRequest, stream grpc.ServerStreamingServer[mediav1.DownloadResponse]) error {
	ctx := stream.Context()
	p, err := s.begin(ctx)
	if err != nil {
		return err
	}
	d, err := blobstore.ParseDigest(req.GetBlobId())
	if err != nil {
		return server.Error(codes.NotFound, reasonBlobNotFound, "no blob %q", req.GetBlobId())
	}
	if err := s.authorizeRead(ctx, p.UserID, d, req.GetCapability()); err != nil {
		return err
	}
	b, err := s.blobs.Open(ctx, d)
	if errors.Is(err, blobstore.ErrNotFound) {
		return server.Error(codes.NotFound, reasonBlobNotFound, "no blob %s", d)
	}
	if err != nil {
		return s.internal(ctx, "open blob", err)
	}
	defer b.Close()
	size := uint64(b.Size())
	off := req.GetOffset()
	if off >= size {
		return server.Error(codes.OutOfRange, reasonRangeInvalid, "offset %d is not inside the blob of %d bytes", off, size)
	}
	end := size
	if n := req.GetLength(); n > 0 && n < size-off {
		end = off + n
	}
	buf := make([]byte, min(downloadChunk, end-off))
	for off < end {
		n := min(uint64(len(buf)), end-off)
		if err := s.allowBytes("media-download", p.UserID, int(n)); err != nil {
			return err
		}
		if _, err := b.ReadAt(buf[:n], int64(off)); err != nil && !errors.Is(err, io.EOF) {
			return s.internal(ctx, "read blob", err)
		}
		// Send has marshalled the message when it returns, so buf is reused.
		if err := stream.Send(&mediav1.DownloadResponse{Offset: off, Data: buf[:n], TotalSize: size}); err != nil {
			return err
		}
		off += n
	}
	return nil
}

func (s *Server) DeleteBlob(ctx context.Context, req *mediav1.DeleteBlobRequest) (*mediav1.DeleteBlobResponse, error) {
	p, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	d, err := blobstore.ParseDigest(req.GetBlobId())
	if err != nil {
		return nil, server.Error(codes.NotFound, reasonBlobNotFound, "no blob %q", req.GetBlobId())
	}
	var found bool
	err = s.records.Update(ctx, func(tx kv.Tx) (err error) {
		found, err = dropOwner(tx, d.String(), p.UserID, s.now())
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "delete blob", err)
	}
	if !found {
		return nil, server.Error(codes.NotFound, reasonBlobNotFound, "the caller owns no blob %s", d)
	}
	if err := s.collect(ctx, d); err != nil {
		// The gc record stays; the sweep deletes the bytes later.
		s.log.Warn("media: delete blob bytes", "err", err)
	}
	return &mediav1.DeleteBlobResponse{}, nil
}

func (s *Server) CreateCapability(ctx context.Context, req *mediav1.CreateCapabilityRequest) (*mediav1.CreateCapabilityResponse, error) {
	p, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	ttl := req.GetTtl().AsDuration()
	if req.GetTtl() == nil || ttl <= 0 || ttl > MaxCapabilityTTL {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "ttl must be positive and at most %s", MaxCapabilityTTL)
	}
	if len(req.GetAudienceUserId()) > maxNameBytes || len(p.UserID) > maxNameBytes {
		return nil, server.Error(codes.InvalidArgument, server.ReasonLimitExceeded, "audience_user_id is longer than %d bytes", maxNameBytes)
	}
	d, err := blobstore.ParseDigest(req.GetBlobId())
	if err != nil {
		return nil, server.Error(codes.NotFound, reasonBlobNotFound, "no blob %q", req.GetBlobId())
	}
	blob := d.String()
	now := s.now()
	c := &capability{Blob: d, Expires: now.Add(ttl).Truncate(time.Second), Owner: p.UserID, Audience: req.GetAudienceUserId()}
	rand.Read(c.ID[:])
	err = s.records.Update(ctx, func(tx kv.Tx) error {
		var o ownRec
		if found, err := get(tx, ownKey(blob, p.UserID), &o); err != nil {
			return err
		} else if !found || !now.Before(o.Lease) {
			return abort(codes.NotFound, reasonBlobNotFound, "the caller owns no blob %s", blob)
		}
		// A blob is kept at least as long as a capability for it works.
		if c.Expires.After(o.Lease) {
			if err := tx.Delete(expKey(o.Lease, expLease, blob+"/"+p.UserID)); err != nil {
				return err
			}
			o.Lease = c.Expires
			if err := put(tx, ownKey(blob, p.UserID), o); err != nil {
				return err
			}
			if err := tx.Put(expKey(o.Lease, expLease, blob+"/"+p.UserID), nil); err != nil {
				return err
			}
		}
		if err := put(tx, capKey(c.ID), capRec{Blob: blob, Owner: p.UserID, Since: o.Since, Expires: c.Expires}); err != nil {
			return err
		}
		return tx.Put(expKey(c.Expires, expCap, hex.EncodeToString(c.ID[:])), nil)
	})
	if err := s.finish(ctx, "create capability", err); err != nil {
		return nil, err
	}
	return &mediav1.CreateCapabilityResponse{Capability: c.marshal(s.capKey), ExpiresAt: timestamppb.New(c.Expires)}, nil
}

func (s *Server) RevokeCapability(ctx context.Context, req *mediav1.RevokeCapabilityRequest) (*mediav1.RevokeCapabilityResponse, error) {
	p, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	c, err := parseCapability(req.GetCapability(), s.capKey)
	if err != nil || c.Owner != p.UserID {
		return nil, server.Error(codes.PermissionDenied, reasonCapabilityInvalid, "not a capability of the caller")
	}
	err = s.records.Update(ctx, func(tx kv.Tx) error {
		if err := tx.Delete(capKey(c.ID)); err != nil {
			return err
		}
		return tx.Delete(expKey(c.Expires, expCap, hex.EncodeToString(c.ID[:])))
	})
	if err != nil {
		return nil, s.internal(ctx, "revoke capability", err)
	}
	return &mediav1.RevokeCapabilityResponse{}, nil
}
