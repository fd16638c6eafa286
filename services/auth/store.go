package auth

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
)

// The auth service keeps all its state in a kv.Store under the "auth/" prefix:
//
//	auth/username/<username>                  → user id
//	auth/account/<user>                       → accountRecord
//	auth/device/<user>/<u32be device>         → deviceRecord
//	auth/spk/<user>/<u32be device>            → signedKeyRecord (signed EC prekey)
//	auth/lrk/<user>/<u32be device>            → signedKeyRecord (last-resort ML-KEM prekey)
//	auth/otk/<user>/<u32be device>/<u32be id> → EC public key
//	auth/kem/<user>/<u32be device>/<u32be id> → signedKeyRecord (one-time ML-KEM prekey)
//	auth/kp/<user>/<u32be device>/<u64be seq> → MLS KeyPackage
//	auth/challenge/<nonce>                    → challengeRecord (a nonce used by a successful login, until it expires)
//	auth/family/<family id>                   → familyRecord (a session: hash of its live refresh token)
//	auth/familyidx/<user>/<u32be device>/<family id> → "" (a device's sessions)
//	auth/purge/<id>                           → purgeRecord (an erasure still running)
//	auth/link/<link id>                       → linkRecord
//	auth/linkidx/<user>/<link id>             → "" (links of an account, until swept)
//	auth/linkname/<username>/<link id>        → "" (links asked for a name without account)
//
// User ids are 32 lowercase hex characters and never contain '/', so "<user>/" prefixes
// never overlap.

const prefix = "auth/"

func usernameKey(name string) []byte { return []byte(prefix + "username/" + name) }
func accountKey(user string) []byte  { return []byte(prefix + "account/" + user) }
func challengeKey(nonce []byte) []byte {
	return append([]byte(prefix+"challenge/"), nonce...)
}
func refreshKey(hash []byte) []byte  { return append([]byte(prefix+"refresh/"), hash...) }
func familyKey(family []byte) []byte { return append([]byte(prefix+"family/"), family...) }
func linkKey(id string) []byte       { return []byte(prefix + "link/" + id) }
func linkIndexPrefix(user string) []byte {
	return []byte(prefix + "linkidx/" + user + "/")
}
func linkIndexKey(user, id string) []byte { return append(linkIndexPrefix(user), id...) }

// refreshIndexPrefix is the index of refresh tokens as stored before sessions became
// families (auth/refreshidx/<user>/<sha256(token)>, auth/refresh/<sha256(token)>); the
// erasure and the sweep delete what is left of it.
func refreshIndexPrefix(user string) []byte {
	return []byte(prefix + "refreshidx/" + user + "/")
}
func devicePrefix(user string) []byte { return []byte(prefix + "device/" + user + "/") }

func deviceKey(user string, device uint32) []byte {
	return binary.BigEndian.AppendUint32(devicePrefix(user), device)
}

// perDevice returns the key prefix of one kind of per-device record ("spk", "otk", ...).
func perDevice(kind, user string, device uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(prefix+kind+"/"+user+"/"), device)
}

// perDevicePool returns the prefix of a pool of per-device records, ending in '/'.
func perDevicePool(kind, user string, device uint32) []byte {
	return append(perDevice(kind, user, device), '/')
}

func pooledKey(kind, user string, device uint32, id uint64, width int) []byte {
	k := perDevicePool(kind, user, device)
	if width == 4 {
		return binary.BigEndian.AppendUint32(k, uint32(id))
	}
	return binary.BigEndian.AppendUint64(k, id)
}

type accountRecord struct {
	UserID       string    `json:"user_id"`
	Username     string    `json:"username"`
	CreatedAt    time.Time `json:"created_at"`
	NextDeviceID uint32    `json:"next_device_id"`
}

type deviceRecord struct {
	ID          uint32    `json:"id"`
	Name        string    `json:"name"`
	IdentityKey []byte    `json:"identity_key"`
	CreatedAt   time.Time `json:"created_at"`
}

type signedKeyRecord struct {
	ID        uint32 `json:"id"`
	PublicKey []byte `json:"public_key"`
	Signature []byte `json:"signature"`
	// CreatedAt is the signed creation time (Unix seconds); 0 in records stored before prekeys
	// had one, which initiators refuse until the device uploads new keys.
	CreatedAt int64 `json:"created_at,omitempty"`
}

type challengeRecord struct {
	Username  string    `json:"username"`
	DeviceID  uint32    `json:"device_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

type linkState int

const (
	linkPending linkState = iota + 1
	linkApproved
	linkRejected
)

type linkRecord struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	Username    string    `json:"username"`
	IdentityKey []byte    `json:"identity_key"`
	DeviceName  string    `json:"device_name"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	State       linkState `json:"state"`
	DeviceID    uint32    `json:"device_id,omitempty"`
}

func getJSON(tx kv.Tx, key []byte, v any) error {
	b, err := tx.Get(key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %q: %w", key, err)
	}
	return nil
}

func putJSON(tx kv.Tx, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", key, err)
	}
	return tx.Put(key, b)
}

// lookupAccount returns the account with the given username.
func lookupAccount(tx kv.Tx, username string) (*accountRecord, error) {
	user, err := tx.Get(usernameKey(username))
	if err != nil {
		return nil, err
	}
	return loadAccount(tx, string(user))
}

func loadAccount(tx kv.Tx, user string) (*accountRecord, error) {
	var a accountRecord
	if err := getJSON(tx, accountKey(user), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

func loadDevice(tx kv.Tx, user string, device uint32) (*deviceRecord, error) {
	var d deviceRecord
	if err := getJSON(tx, deviceKey(user, device), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func loadDevices(tx kv.Tx, user string) ([]deviceRecord, error) {
	pairs, err := kv.ScanPrefix(tx, devicePrefix(user), 0)
	if err != nil {
		return nil, err
	}
	out := make([]deviceRecord, 0, len(pairs))
	for _, p := range pairs {
		var d deviceRecord
		if err := json.Unmarshal(p.Value, &d); err != nil {
			return nil, fmt.Errorf("decode %q: %w", p.Key, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// countPrefix counts the keys under p; pools are bounded (maxPool), so this stays cheap.
func countPrefix(tx kv.Tx, p []byte) (int, error) {
	pairs, err := tx.Scan(p, kv.PrefixEnd(p), 0)
	return len(pairs), err
}

func deletePrefix(tx kv.Tx, p []byte) error {
	pairs, err := tx.Scan(p, kv.PrefixEnd(p), 0)
	if err != nil {
		return err
	}
	for _, pair := range pairs {
		if err := tx.Delete(pair.Key); err != nil {
			return err
		}
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, kv.ErrNotFound) }

func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }
