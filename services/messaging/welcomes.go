package messaging

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
)

// A Welcome (up to 1 MiB) is stored once per commit that adds devices, and each added
// device holds a reference to it. It is deleted when it can no longer be of use, so that
// Welcomes do not pile up for the whole life of the store:
//
//	msg/welcome-state/<hex group id>/<epoch>        → welcomeState: devices yet to fetch it
//	msg/welcomex/<expiry: 20 digits>/<hex group id>/<epoch> → JSON []member it was for
//
// Each device's first fetch counts it down; when every addressed device has fetched it,
// its expiry moves to welcomeFetchGrace from then (a device whose fetch response was lost,
// or that crashed before joining, fetches it again on the notice's redelivery). A Welcome
// some device never fetches expires with its notices, after the message TTL; the sweeper
// deletes the Welcome, its state and the references still pointing to it. Records written
// before this (the Welcome inline in the reference, or no state) are left alone.

// welcomeFetchGrace is how long a Welcome every addressed device fetched stays fetchable.
const welcomeFetchGrace = time.Hour

// welcomeSweepBatch bounds the Welcomes one sweep transaction deletes.
const welcomeSweepBatch = 64

const welcomeExpiryPrefix = "msg/welcomex/"

type welcomeState struct {
	Pending int       `json:"pending"`
	Expiry  time.Time `json:"expiry"` // whole seconds: where its expiry index entry is
}

func welcomeStateKey(gid []byte, epoch uint64) []byte {
	return fmt.Appendf(nil, "msg/welcome-state/%x/%020d", gid, epoch)
}

func welcomeExpiryKey(expiry time.Time, gid []byte, epoch uint64) []byte {
	return fmt.Appendf(nil, "%s%020d/%x/%020d", welcomeExpiryPrefix, max(expiry.Unix(), 0), gid, epoch)
}

// putWelcome stores the Welcome of the commit that moved group gid to epoch, a reference
// for each added device, its state and its expiry. A device added again before it fetched
// an earlier Welcome is counted out of the earlier one, which no one will fetch now.
func putWelcome(tx kv.Tx, gid []byte, epoch uint64, welcome []byte, added []member, expiry, now time.Time) error {
	expiry = expiry.Truncate(time.Second)
	if err := tx.Put(welcomeBodyKey(gid, epoch), welcome); err != nil {
		return err
	}
	ref, err := json.Marshal(welcomeRecord{Epoch: epoch})
	if err != nil {
		return err
	}
	for _, w := range added {
		if err := fetched(tx, gid, w, now); err != nil {
			return err
		}
		if err := tx.Put(welcomeKey(gid, w), ref); err != nil {
			return err
		}
	}
	state, err := json.Marshal(welcomeState{Pending: len(added), Expiry: expiry})
	if err != nil {
		return err
	}
	if err := tx.Put(welcomeStateKey(gid, epoch), state); err != nil {
		return err
	}
	to, err := json.Marshal(added)
	if err != nil {
		return err
	}
	return tx.Put(welcomeExpiryKey(expiry, gid, epoch), to)
}

// fetched records that device w no longer needs the Welcome its reference points to, if
// it had not yet; when no addressed device needs it any more, the Welcome expires
// welcomeFetchGrace from now (or at its expiry, if that is sooner).
func fetched(tx kv.Tx, gid []byte, w member, now time.Time) error {
	b, err := tx.Get(welcomeKey(gid, w))
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	var ref welcomeRecord
	if err := json.Unmarshal(b, &ref); err != nil || len(ref.Welcome) > 0 || !ref.Fetched.IsZero() {
		return nil // undecodable or written before Welcomes expired: nothing counts it
	}
	ref.Fetched = now
	if b, err = json.Marshal(ref); err != nil {
		return err
	}
	if err := tx.Put(welcomeKey(gid, w), b); err != nil {
		return err
	}
	sk := welcomeStateKey(gid, ref.Epoch)
	b, err = tx.Get(sk)
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	var st welcomeState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("welcome state %s: %w", sk, err)
	}
	if st.Pending--; st.Pending > 0 {
		if b, err = json.Marshal(st); err != nil {
			return err
		}
		return tx.Put(sk, b)
	}
	if err := tx.Delete(sk); err != nil {
		return err
	}
	soon := now.Add(welcomeFetchGrace).Truncate(time.Second)
	if !soon.Before(st.Expiry) {
		return nil
	}
	old := welcomeExpiryKey(st.Expiry, gid, ref.Epoch)
	to, err := tx.Get(old)
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if err := tx.Delete(old); err != nil {
		return err
	}
	return tx.Put(welcomeExpiryKey(soon, gid, ref.Epoch), to)
}

// sweepWelcomes deletes the Welcomes whose expiry passed, with their state and the
// references still pointing to them, and returns how many it deleted.
func (s *Server) sweepWelcomes(ctx context.Context) (int, error) {
	end := fmt.Appendf(nil, "%s%020d", welcomeExpiryPrefix, s.now().Unix()+1)
	total := 0
	for {
		n := 0
		err := s.groups.Update(ctx, func(tx kv.Tx) error {
			pairs, err := tx.Scan([]byte(welcomeExpiryPrefix), end, welcomeSweepBatch)
			if err != nil {
				return err
			}
			n = len(pairs)
			for _, p := range pairs {
				if err := tx.Delete(p.Key); err != nil {
					return err
				}
				gid, epoch, ok := parseWelcomeExpiryKey(p.Key)
				if !ok {
					continue
				}
				var to []member
				_ = json.Unmarshal(p.Value, &to) // undecodable: delete the Welcome all the same
				for _, k := range [][]byte{welcomeBodyKey(gid, epoch), welcomeStateKey(gid, epoch)} {
					if err := tx.Delete(k); err != nil {
						return err
					}
				}
				for _, w := range to {
					b, err := tx.Get(welcomeKey(gid, w))
					if errors.Is(err, kv.ErrNotFound) {
						continue
					} else if err != nil {
						return err
					}
					var ref welcomeRecord
					if json.Unmarshal(b, &ref) == nil && ref.Epoch == epoch && len(ref.Welcome) == 0 {
						if err := tx.Delete(welcomeKey(gid, w)); err != nil {
							return err
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < welcomeSweepBatch {
			return total, nil
		}
	}
}

// parseWelcomeExpiryKey reads the group id and epoch out of an expiry index key.
func parseWelcomeExpiryKey(k []byte) ([]byte, uint64, bool) {
	parts := bytes.Split(bytes.TrimPrefix(k, []byte(welcomeExpiryPrefix)), []byte("/"))
	if len(parts) != 3 {
		return nil, 0, false
	}
	gid, err := hex.DecodeString(string(parts[1]))
	if err != nil {
		return nil, 0, false
	}
	epoch, err := strconv.ParseUint(string(parts[2]), 10, 64)
	if err != nil {
		return nil, 0, false
	}
	return gid, epoch, true
}
