package notification

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// Keys in the kv store, all under the service's namespace: one target and at most one dead
// letter per device.
const (
	targetPrefix = "notify/target/"
	deadPrefix   = "notify/dead/"
)

// maxTargetRecord bounds a stored target: the largest request the API limits allow.
const maxTargetRecord = 1 + 8 + 8<<10

func userPrefix(prefix, userID string) ([]byte, error) {
	tok, err := bus.EscapeToken(userID)
	if err != nil {
		return nil, err
	}
	return []byte(prefix + tok + "/"), nil
}

func deviceKey(prefix, userID string, deviceID uint32) ([]byte, error) {
	p, err := userPrefix(prefix, userID)
	if err != nil {
		return nil, err
	}
	return strconv.AppendUint(p, uint64(deviceID), 10), nil
}

// storedTarget: version (1) = 1 || registered unix seconds (8) || RegisterPushTargetRequest.
type storedTarget struct {
	registered time.Time
	target     *notificationv1.RegisterPushTargetRequest
}

func encodeTarget(t storedTarget) ([]byte, error) {
	b := make([]byte, 9, 9+proto.Size(t.target))
	b[0] = 1
	binary.BigEndian.PutUint64(b[1:], uint64(t.registered.Unix()))
	return proto.MarshalOptions{Deterministic: true}.MarshalAppend(b, t.target)
}

var errTargetRecord = errors.New("malformed push target record")

func decodeTarget(b []byte) (storedTarget, error) {
	if len(b) < 9 || len(b) > maxTargetRecord || b[0] != 1 {
		return storedTarget{}, fmt.Errorf("%w: header", errTargetRecord)
	}
	var t notificationv1.RegisterPushTargetRequest
	if err := proto.Unmarshal(b[9:], &t); err != nil {
		return storedTarget{}, fmt.Errorf("%w: %w", errTargetRecord, err)
	}
	if platform(&t) == commonv1.PushPlatform_PUSH_PLATFORM_UNSPECIFIED {
		return storedTarget{}, fmt.Errorf("%w: no target", errTargetRecord)
	}
	return storedTarget{registered: time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0), target: &t}, nil
}

func platform(t *notificationv1.RegisterPushTargetRequest) commonv1.PushPlatform {
	switch t.GetTarget().(type) {
	case *notificationv1.RegisterPushTargetRequest_Apns:
		return commonv1.PushPlatform_PUSH_PLATFORM_APNS
	case *notificationv1.RegisterPushTargetRequest_Fcm:
		return commonv1.PushPlatform_PUSH_PLATFORM_FCM
	case *notificationv1.RegisterPushTargetRequest_WebPush:
		return commonv1.PushPlatform_PUSH_PLATFORM_WEB_PUSH
	}
	return commonv1.PushPlatform_PUSH_PLATFORM_UNSPECIFIED
}

// DeadLetter records a device whose last push failed for good. It names no token, endpoint
// or content: only what an operator needs to see that pushes fail, and why.
type DeadLetter struct {
	UserID   string
	DeviceID uint32
	Platform commonv1.PushPlatform
	At       time.Time
	Attempts int
	Reason   string
}

// dead letter value: version (1) = 1 || at (8) || attempts (2) || platform (1) || reason.
func encodeDead(d DeadLetter) []byte {
	b := make([]byte, 12, 12+len(d.Reason))
	b[0] = 1
	binary.BigEndian.PutUint64(b[1:], uint64(d.At.Unix()))
	binary.BigEndian.PutUint16(b[9:], uint16(min(d.Attempts, 0xffff)))
	b[11] = byte(d.Platform)
	return append(b, d.Reason...)
}

func decodeDead(b []byte) (DeadLetter, error) {
	if len(b) < 12 || len(b) > 12+maxReasonLen || b[0] != 1 {
		return DeadLetter{}, errors.New("malformed dead letter")
	}
	return DeadLetter{
		At: time.Unix(int64(binary.BigEndian.Uint64(b[1:])), 0), Attempts: int(binary.BigEndian.Uint16(b[9:])),
		Platform: commonv1.PushPlatform(b[11]), Reason: string(b[12:]),
	}, nil
}

const maxReasonLen = 200
