package media

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
)

// The service's records in kv, all under "media/". Bytes live in the blobstore; these say
// who owns what until when. See docs/storage.md ("Media").
//
//	media/upload/<upload id>        uploadRec: owner, declared size, expiry, blob once completed
//	media/own/<blob hex>/<user id>  ownRec: an owner's claim on a blob and its lease
//	media/quota/<user id>           quotaRec: bytes stored and uploaded today, open uploads
//	media/cap/<capability id hex>   capRec: a capability that has not been revoked
//	media/gc/<blob hex>             a blob whose last owner left: its bytes are deleted next
//	media/exp/<unix s %016x>/<kind>/<name>  when an upload (u), lease (o) or capability (c) ends
const prefix = "media/"

type uploadRec struct {
	Owner   string    `json:"owner"`
	Total   int64     `json:"total"`
	Chunk   int       `json:"chunk"`
	Expires time.Time `json:"expires"`
	// Blob is set once the upload is completed; the record stays until Expires so that a
	// repeated CompleteUpload returns the same blob and late chunks get UPLOAD_COMPLETED.
	Blob string `json:"blob,omitempty"`
}

type ownRec struct {
	Size  int64     `json:"size"`
	Lease time.Time `json:"lease"`
	// Since tells this ownership from an earlier one of the same blob by the same user:
	// capabilities name it, so deleting a blob revokes them for good.
	Since time.Time `json:"since"`
}

type quotaRec struct {
	Stored   int64  `json:"stored"`
	Day      string `json:"day"`
	DayBytes int64  `json:"day_bytes"`
	Open     int    `json:"open"`
}

type capRec struct {
	Blob    string    `json:"blob"`
	Owner   string    `json:"owner"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
}

func uploadKey(id string) []byte       { return []byte(prefix + "upload/" + id) }
func ownKey(blob, user string) []byte  { return []byte(prefix + "own/" + blob + "/" + user) }
func ownPrefix(blob string) []byte     { return []byte(prefix + "own/" + blob + "/") }
func quotaKey(user string) []byte      { return []byte(prefix + "quota/" + user) }
func capKey(id [capIDSize]byte) []byte { return []byte(prefix + "cap/" + hex.EncodeToString(id[:])) }
func gcKey(blob string) []byte         { return []byte(prefix + "gc/" + blob) }
func gcPrefix() []byte                 { return []byte(prefix + "gc/") }
func expPrefix() []byte                { return []byte(prefix + "exp/") }
func expKey(t time.Time, kind, name string) []byte {
	return fmt.Appendf(nil, "%sexp/%016x/%s/%s", prefix, max(t.Unix(), 0), kind, name)
}

// Expiry kinds.
const (
	expUpload = "u"
	expLease  = "o"
	expCap    = "c"
)

// get reads the JSON record at key into v; found is false when there is none.
func get(tx kv.Tx, key []byte, v any) (found bool, err error) {
	b, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("media: corrupt record %q: %w", key, err)
	}
	return true, nil
}

func put(tx kv.Tx, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(key, b)
}

// quota returns the caller's quota record with the day rolled over to today.
func quota(tx kv.Tx, user string, now time.Time) (quotaRec, error) {
	var q quotaRec
	if _, err := get(tx, quotaKey(user), &q); err != nil {
		return q, err
	}
	if day := now.UTC().Format(time.DateOnly); q.Day != day {
		q.Day, q.DayBytes = day, 0
	}
	return q, nil
}

// hasOwner reports whether any account still owns blob.
func hasOwner(tx kv.Tx, blob string) (bool, error) {
	p := ownPrefix(blob)
	pairs, err := tx.Scan(p, kv.PrefixEnd(p), 1)
	return len(pairs) > 0, err
}

// dropOwner ends user's ownership of blob in tx: the quota is released, and the blob is
// queued for deletion when no owner is left. found is false when user owned nothing.
func dropOwner(tx kv.Tx, blob, user string, now time.Time) (found bool, err error) {
	var o ownRec
	if found, err := get(tx, ownKey(blob, user), &o); err != nil || !found {
		return false, err
	}
	if err := tx.Delete(ownKey(blob, user)); err != nil {
		return false, err
	}
	if err := tx.Delete(expKey(o.Lease, expLease, blob+"/"+user)); err != nil {
		return false, err
	}
	q, err := quota(tx, user, now)
	if err != nil {
		return false, err
	}
	q.Stored = max(q.Stored-o.Size, 0)
	if err := put(tx, quotaKey(user), q); err != nil {
		return false, err
	}
	left, err := hasOwner(tx, blob)
	if err != nil {
		return false, err
	}
	if !left {
		if err := tx.Put(gcKey(blob), nil); err != nil {
			return false, err
		}
	}
	return true, nil
}
