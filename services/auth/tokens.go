package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
)

// Refresh tokens come in families: a login starts one, and each rotation replaces the
// family's single live token with a new one. The store keeps one record per family with
// the hash of its live token, so a rotated token is gone the moment it is rotated. A
// token carries its family id, so presenting a rotated token is still recognised, as a
// theft, and deletes the family. Families expire with their live token and Sweep deletes
// them; removing a device clears its families' tokens, deleting an account deletes them.
//
//	refresh token = base64url(family id [16] || secret [32])
//
// Knowing a family id is as good as holding a token of the family: it is never shown
// anywhere else, so nobody else can revoke the family by guessing.
const (
	familyIDSize      = 16
	refreshSecretSize = 32
	// maxFamiliesPerDevice bounds the live sessions of one device, so the records of a
	// device stay few however often it logs in. A device needs one; more come from
	// logging in again after losing its state. A login past the bound ends the session
	// that expires first.
	maxFamiliesPerDevice = 8
	// sweepGrace keeps expired records a while, so a late client gets the precise error
	// (REFRESH_TOKEN_EXPIRED, DEVICE_REMOVED) before the record is swept.
	sweepGrace = time.Hour
)

// familyRecord is a login session: whose it is and the hash of its live refresh token.
type familyRecord struct {
	UserID   string `json:"user_id"`
	DeviceID uint32 `json:"device_id"`
	// Current is the SHA-256 of the live refresh token; nil once the device is removed.
	Current   []byte    `json:"current,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	// Removed marks the session of a removed device, kept without a token until it
	// expires so that a refresh learns why it fails.
	Removed bool `json:"removed,omitempty"`
}

func familyIndexPrefix(user string, device uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(prefix+"familyidx/"+user+"/"), device)
}

func familyIndexKey(user string, device uint32, family []byte) []byte {
	return append(append(familyIndexPrefix(user, device), '/'), family...)
}

// newRefreshToken returns a fresh token of family and its hash.
func newRefreshToken(family []byte) (string, []byte) {
	raw := make([]byte, familyIDSize+refreshSecretSize)
	copy(raw, family)
	rand.Read(raw[familyIDSize:])
	token := base64.RawURLEncoding.EncodeToString(raw)
	return token, hashToken(token)
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// familyOf returns the family id a refresh token carries, or false for a malformed
// token.
func familyOf(token string) ([]byte, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != familyIDSize+refreshSecretSize {
		return nil, false
	}
	return raw[:familyIDSize], true
}

// putFamily makes hash the live token of family, valid until expires.
func putFamily(tx kv.Tx, family []byte, f *familyRecord, hash []byte, expires time.Time) error {
	f.Current, f.ExpiresAt = hash, expires
	if err := tx.Put(familyIndexKey(f.UserID, f.DeviceID, family), nil); err != nil {
		return err
	}
	return putJSON(tx, familyKey(family), f)
}

func deleteFamily(tx kv.Tx, family []byte, f *familyRecord) error {
	if err := tx.Delete(familyIndexKey(f.UserID, f.DeviceID, family)); err != nil {
		return err
	}
	return tx.Delete(familyKey(family))
}

// deviceFamilies returns the families of a device with their ids.
func deviceFamilies(tx kv.Tx, user string, device uint32) ([][]byte, []familyRecord, error) {
	p := append(familyIndexPrefix(user, device), '/')
	idx, err := kv.ScanPrefix(tx, p, 0)
	if err != nil {
		return nil, nil, err
	}
	ids := make([][]byte, 0, len(idx))
	recs := make([]familyRecord, 0, len(idx))
	for _, e := range idx {
		id := bytes.TrimPrefix(e.Key, p)
		var f familyRecord
		if err := getJSON(tx, familyKey(id), &f); isNotFound(err) {
			if err := tx.Delete(e.Key); err != nil {
				return nil, nil, err
			}
			continue
		} else if err != nil {
			return nil, nil, err
		}
		ids, recs = append(ids, id), append(recs, f)
	}
	return ids, recs, nil
}

// makeRoomForFamily ends the device's sessions that expire first until a new one keeps
// the device within maxFamiliesPerDevice.
func makeRoomForFamily(tx kv.Tx, user string, device uint32) error {
	ids, recs, err := deviceFamilies(tx, user, device)
	if err != nil {
		return err
	}
	order := make([]int, len(ids))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return recs[a].ExpiresAt.Compare(recs[b].ExpiresAt) })
	for _, i := range order[:max(0, len(order)-maxFamiliesPerDevice+1)] {
		if err := deleteFamily(tx, ids[i], &recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// clearDeviceFamilies forgets the tokens of a removed device's sessions, keeping each
// session's record (without a token) until it expires, so that a refresh is answered
// DEVICE_REMOVED rather than REFRESH_TOKEN_INVALID.
func clearDeviceFamilies(tx kv.Tx, user string, device uint32) error {
	ids, recs, err := deviceFamilies(tx, user, device)
	if err != nil {
		return err
	}
	for i, id := range ids {
		f := recs[i]
		f.Current, f.Removed = nil, true
		if err := putJSON(tx, familyKey(id), f); err != nil {
			return err
		}
	}
	return nil
}

// sweepFamilies deletes the sessions that expired more than sweepGrace ago.
func (s *Server) sweepFamilies(ctx context.Context) error {
	cutoff := s.now().Add(-sweepGrace)
	return s.sweepPrefix(ctx, prefix+"family/", func(key, v []byte) (bool, []byte) {
		var f familyRecord
		if decodeJSON(v, &f) != nil || f.UserID == "" {
			return true, nil
		}
		if !cutoff.After(f.ExpiresAt) {
			return false, nil
		}
		return true, familyIndexKey(f.UserID, f.DeviceID, bytes.TrimPrefix(key, []byte(prefix+"family/")))
	})
}
