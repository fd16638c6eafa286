package media

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/guardyn/guardyn/libs/blobstore"
	"github.com/guardyn/guardyn/libs/kv"
)

// sweepBatch bounds the expiries one transaction handles.
const sweepBatch = 256

// DefaultSweepInterval is how often Run sweeps.
const DefaultSweepInterval = time.Minute

// Run sweeps every interval until ctx ends (0: DefaultSweepInterval).
func (s *Server) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("media: sweep", "err", err)
			}
		}
	}
}

// Sweep ends what has expired: unfinished uploads (their bytes and quota reservation),
// completed uploads' records, leases (an owner's claim on a blob; a blob no owner claims
// any more is deleted) and capabilities' records. It is safe to run concurrently with
// requests and after a crash at any point: every step is idempotent.
func (s *Server) Sweep(ctx context.Context) error {
	for {
		now := s.now()
		end := expKey(now, "", "")
		var due [][]byte
		err := s.records.View(ctx, func(tx kv.Tx) error {
			pairs, err := tx.Scan(expPrefix(), end, sweepBatch)
			for _, p := range pairs {
				due = append(due, p.Key)
			}
			return err
		})
		if err != nil {
			return err
		}
		for _, key := range due {
			if err := s.expire(ctx, key, now); err != nil {
				return err
			}
		}
		if len(due) < sweepBatch {
			return s.collectAll(ctx)
		}
	}
}

// expire ends the thing one expiry key names.
func (s *Server) expire(ctx context.Context, key []byte, now time.Time) error {
	rest := key[len(expPrefix()):]
	parts := bytes.SplitN(rest, []byte("/"), 3)
	if len(parts) != 3 {
		return s.records.Update(ctx, func(tx kv.Tx) error { return tx.Delete(key) })
	}
	at, _ := strconv.ParseInt(string(parts[0]), 16, 64)
	kind, name := string(parts[1]), string(parts[2])
	switch kind {
	case expUpload:
		// Bytes first: if the records went first, a crash would leave bytes nobody
		// sweeps.
		if blobstore.CheckUploadID(name) == nil {
			var rec uploadRec
			var found bool
			if err := s.records.View(ctx, func(tx kv.Tx) (err error) {
				found, err = get(tx, uploadKey(name), &rec)
				return err
			}); err != nil {
				return err
			}
			if found && rec.Blob == "" && !rec.Expires.After(now) {
				if err := s.blobs.DeleteUpload(ctx, name); err != nil {
					return err
				}
			}
		}
		return s.records.Update(ctx, func(tx kv.Tx) error {
			var rec uploadRec
			found, err := get(tx, uploadKey(name), &rec)
			if err != nil {
				return err
			}
			if found && !rec.Expires.After(now) {
				if rec.Blob == "" {
					q, err := quota(tx, rec.Owner, now)
					if err != nil {
						return err
					}
					q.Open = max(q.Open-1, 0)
					q.Stored = max(q.Stored-rec.Total, 0)
					if err := put(tx, quotaKey(rec.Owner), q); err != nil {
						return err
					}
				}
				if err := tx.Delete(uploadKey(name)); err != nil {
					return err
				}
			}
			return tx.Delete(key)
		})
	case expLease:
		blob, user, ok := bytes.Cut([]byte(name), []byte("/"))
		return s.records.Update(ctx, func(tx kv.Tx) error {
			var o ownRec
			if ok {
				found, err := get(tx, ownKey(string(blob), string(user)), &o)
				if err != nil {
					return err
				}
				// A renewed lease has a later key of its own.
				if found && o.Lease.Unix() == at && !o.Lease.After(now) {
					if _, err := dropOwner(tx, string(blob), string(user), now); err != nil {
						return err
					}
				}
			}
			return tx.Delete(key)
		})
	case expCap:
		return s.records.Update(ctx, func(tx kv.Tx) error {
			var id [capIDSize]byte
			if b, err := hex.DecodeString(name); err == nil && len(b) == capIDSize {
				copy(id[:], b)
				if err := tx.Delete(capKey(id)); err != nil {
					return err
				}
			}
			return tx.Delete(key)
		})
	}
	return s.records.Update(ctx, func(tx kv.Tx) error { return tx.Delete(key) })
}

// collectAll deletes the bytes of every blob that lost its last owner.
func (s *Server) collectAll(ctx context.Context) error {
	var blobs []string
	err := s.records.View(ctx, func(tx kv.Tx) error {
		pairs, err := tx.Scan(gcPrefix(), kv.PrefixEnd(gcPrefix()), 0)
		for _, p := range pairs {
			blobs = append(blobs, string(p.Key[len(gcPrefix()):]))
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, b := range blobs {
		d, err := blobstore.ParseDigest(b)
		if err != nil {
			if err := s.records.Update(ctx, func(tx kv.Tx) error { return tx.Delete(gcKey(b)) }); err != nil {
				return err
			}
			continue
		}
		if err := s.collect(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// collect deletes blob d's bytes if it is queued for deletion and still has no owner,
// under the blob's lock so that no completion adds an owner in between.
func (s *Server) collect(ctx context.Context, d blobstore.Digest) error {
	mu := s.blobLock(d)
	mu.Lock()
	defer mu.Unlock()
	blob := d.String()
	var queued, owned bool
	err := s.records.View(ctx, func(tx kv.Tx) error {
		_, err := tx.Get(gcKey(blob))
		queued = err == nil
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		owned, err = hasOwner(tx, blob)
		return err
	})
	if err != nil || !queued {
		return err
	}
	if !owned {
		if err := s.blobs.Delete(ctx, d); err != nil {
			return fmt.Errorf("media: delete blob %s: %w", blob, err)
		}
	}
	return s.records.Update(ctx, func(tx kv.Tx) error { return tx.Delete(gcKey(blob)) })
}
