package presence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/crypto/presencestatus"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// record is the value of one online device's key in the presence bucket. Offline devices
// have no key.
//
//	version (1) = 1 || status (1) || flags (1) = 0 || updated unix seconds (8) || len (2) || sealed
//
// A device that chose to appear offline while connected keeps a key with status OFFLINE, so
// that its open Receive stream, which refreshes the key, does not bring it back online.
type record struct {
	status  presencev1.PresenceStatus // ONLINE, AWAY, BUSY or OFFLINE
	updated time.Time
	sealed  []byte
}

const (
	recordVersion    = 1
	recordHeader     = 1 + 1 + 1 + 8 + 2
	maxRecordSize    = recordHeader + presencestatus.MaxSealedSize
	deviceKeyDivider = "."
)

var errRecord = errors.New("malformed presence record")

func (r record) encode() []byte {
	b := make([]byte, recordHeader, recordHeader+len(r.sealed))
	b[0] = recordVersion
	b[1] = byte(r.status)
	binary.BigEndian.PutUint64(b[3:11], uint64(r.updated.Unix()))
	binary.BigEndian.PutUint16(b[11:13], uint16(len(r.sealed)))
	return append(b, r.sealed...)
}

// decodeRecord parses a bucket value. Anyone with access to NATS can write the bucket, so
// every field is checked.
func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHeader || len(b) > maxRecordSize {
		return record{}, fmt.Errorf("%w: %d bytes", errRecord, len(b))
	}
	if b[0] != recordVersion {
		return record{}, fmt.Errorf("%w: version %d", errRecord, b[0])
	}
	st := presencev1.PresenceStatus(b[1])
	if !onlineStatus(st) && st != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
		return record{}, fmt.Errorf("%w: status %d", errRecord, b[1])
	}
	if b[2] != 0 {
		return record{}, fmt.Errorf("%w: flags %#x", errRecord, b[2])
	}
	n := int(binary.BigEndian.Uint16(b[11:13]))
	if n != len(b)-recordHeader {
		return record{}, fmt.Errorf("%w: status text of %d bytes in %d", errRecord, n, len(b)-recordHeader)
	}
	r := record{status: st, updated: time.Unix(int64(binary.BigEndian.Uint64(b[3:11])), 0)}
	if n > 0 {
		if _, err := presencestatus.KeyID(b[recordHeader:]); err != nil {
			return record{}, fmt.Errorf("%w: %w", errRecord, err)
		}
		r.sealed = b[recordHeader:]
	}
	return r, nil
}

// onlineStatus reports whether st is a status a device can be online with.
func onlineStatus(st presencev1.PresenceStatus) bool {
	return st == presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE ||
		st == presencev1.PresenceStatus_PRESENCE_STATUS_AWAY ||
		st == presencev1.PresenceStatus_PRESENCE_STATUS_BUSY
}

// availability orders statuses by how available they make an account: its status is that of
// its most available device.
func availability(st presencev1.PresenceStatus) int {
	switch st {
	case presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE:
		return 3
	case presencev1.PresenceStatus_PRESENCE_STATUS_AWAY:
		return 2
	case presencev1.PresenceStatus_PRESENCE_STATUS_BUSY:
		return 1
	}
	return 0
}

// deviceKey is the bucket key of a device: the escaped user id (bus.EscapeToken, a
// one-to-one mapping) and the device id.
func deviceKey(userID string, deviceID uint32) (string, error) {
	user, err := bus.EscapeToken(userID)
	if err != nil {
		return "", err
	}
	if deviceID == 0 {
		return "", errors.New("device id 0")
	}
	return user + deviceKeyDivider + strconv.FormatUint(uint64(deviceID), 10), nil
}

// parseDeviceKey splits a bucket key into the escaped user token and the device id.
func parseDeviceKey(key string) (user string, device uint32, ok bool) {
	user, dev, ok := strings.Cut(key, deviceKeyDivider)
	if !ok || user == "" {
		return "", 0, false
	}
	id, err := strconv.ParseUint(dev, 10, 32)
	if err != nil || id == 0 {
		return "", 0, false
	}
	return user, uint32(id), true
}
