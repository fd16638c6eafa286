package auth

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/guardyn/guardyn/libs/kv"
)

// purgeBatch bounds the keys one transaction deletes while erasing a device or an
// account (up to 3000 pooled keys per device, 16 devices), so that an erasure never
// builds one huge transaction on the single writer.
const purgeBatch = 512

// purgeRecord names what is left to erase of removed devices or a deleted account. The
// transaction that removes the device or the account writes it, the erasure deletes it
// last, and Sweep finishes any erasure a crash interrupted.
//
//	auth/purge/<random id> → purgeRecord
type purgeRecord struct {
	UserID    string   `json:"user_id"`
	DeviceIDs []uint32 `json:"device_ids"`
	// Account also erases the account-wide records: sessions, links.
	Account bool `json:"account,omitempty"`
}

func purgeKey(id string) []byte { return []byte(prefix + "purge/" + id) }

// purgeStep deletes every key under prefix and, for index keys, the record each names.
type purgeStep struct {
	prefix []byte
	target func(tail []byte) []byte // nil: no record behind the key
}

func (r purgeRecord) steps() []purgeStep {
	var out []purgeStep
	for _, d := range r.DeviceIDs {
		for _, kind := range []string{"otk", "kem", "kp"} {
			out = append(out, purgeStep{prefix: perDevicePool(kind, r.UserID, d)})
		}
		for _, kind := range []string{"spk", "lrk"} {
			out = append(out, purgeStep{prefix: perDevice(kind, r.UserID, d)})
		}
	}
	if r.Account {
		out = append(out,
			purgeStep{prefix: []byte(prefix + "familyidx/" + r.UserID + "/"), target: func(tail []byte) []byte {
				// tail is <u32be device>/<family id>
				if len(tail) <= 5 {
					return nil
				}
				return familyKey(tail[5:])
			}},
			purgeStep{prefix: linkIndexPrefix(r.UserID), target: func(tail []byte) []byte { return linkKey(string(tail)) }},
			// Sessions and their index as stored before families replaced them.
			purgeStep{prefix: refreshIndexPrefix(r.UserID), target: func(tail []byte) []byte {
				if len(tail) == 0 {
					return nil
				}
				return refreshKey(tail)
			}},
		)
	}
	return out
}

// startPurge records r in tx; run s.purge with the returned id after tx commits.
func startPurge(tx kv.Tx, r purgeRecord) (string, error) {
	id := newID(16)
	return id, putJSON(tx, purgeKey(id), r)
}

// purge erases what r names in transactions of at most purgeBatch deletions, then the
// record itself. It is idempotent, so Sweep can rerun an interrupted one.
func (s *Server) purge(ctx context.Context, id string, r purgeRecord) error {
	for _, step := range r.steps() {
		if err := s.purgePrefix(ctx, step); err != nil {
			return err
		}
	}
	return s.store.Update(ctx, func(tx kv.Tx) error { return tx.Delete(purgeKey(id)) })
}

// purgePrefix deletes every key under step.prefix, and the records they name, in
// transactions of at most purgeBatch deletions.
func (s *Server) purgePrefix(ctx context.Context, step purgeStep) error {
	for {
		var n int
		err := s.store.Update(ctx, func(tx kv.Tx) error {
			pairs, err := kv.ScanPrefix(tx, step.prefix, purgeBatch/2)
			if err != nil {
				return err
			}
			n = len(pairs)
			for _, p := range pairs {
				if err := tx.Delete(p.Key); err != nil {
					return err
				}
				if step.target == nil {
					continue
				}
				if k := step.target(bytes.TrimPrefix(p.Key, step.prefix)); len(k) > 0 {
					if err := tx.Delete(k); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil || n < purgeBatch/2 {
			return err
		}
	}
}

// finishPurge runs the erasure recorded under id; a failure is logged and left to Sweep,
// since the removal it follows has committed. The caller leaving does not stop it.
func (s *Server) finishPurge(ctx context.Context, id string, r purgeRecord) {
	if err := s.purge(context.WithoutCancel(ctx), id, r); err != nil {
		s.log.WarnContext(ctx, "auth: erasure left for the sweep", "err", err)
	}
}

// resumePurges finishes the erasures a crash interrupted.
func (s *Server) resumePurges(ctx context.Context) error {
	var pending []kv.Pair
	if err := s.store.View(ctx, func(tx kv.Tx) error {
		var err error
		pending, err = kv.ScanPrefix(tx, []byte(prefix+"purge/"), 0)
		return err
	}); err != nil {
		return err
	}
	for _, p := range pending {
		var r purgeRecord
		if err := json.Unmarshal(p.Value, &r); err != nil || r.UserID == "" {
			continue
		}
		if err := s.purge(ctx, string(bytes.TrimPrefix(p.Key, []byte(prefix+"purge/"))), r); err != nil {
			return err
		}
	}
	return nil
}

// sweepPrefix deletes the records under p that gone reports expired, with the index key
// it names for each, reading and deleting at most purgeBatch/2 records per transaction.
func (s *Server) sweepPrefix(ctx context.Context, p string, gone func(key, value []byte) (bool, []byte)) error {
	start, end := []byte(p), kv.PrefixEnd([]byte(p))
	for {
		var next []byte
		err := s.store.Update(ctx, func(tx kv.Tx) error {
			next = nil
			pairs, err := tx.Scan(start, end, purgeBatch/2)
			if err != nil {
				return err
			}
			for _, pair := range pairs {
				expired, also := gone(pair.Key, pair.Value)
				if !expired {
					continue
				}
				if err := tx.Delete(pair.Key); err != nil {
					return err
				}
				if also != nil {
					if err := tx.Delete(also); err != nil {
						return err
					}
				}
			}
			if len(pairs) == purgeBatch/2 {
				next = append(bytes.Clone(pairs[len(pairs)-1].Key), 0)
			}
			return nil
		})
		if err != nil || next == nil {
			return err
		}
		start = next
	}
}
