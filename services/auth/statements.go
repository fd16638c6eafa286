package auth

import (
	"encoding/binary"

	"github.com/guardyn/guardyn/libs/crypto/keys"
)

// ContextDeviceLinkStatus is the signature context a linking device uses to poll its link.
const ContextDeviceLinkStatus keys.Context = "device-link-status"

// The statements below are the exact messages devices sign for the auth API
// (proto/guardyn/auth/v1/auth.proto documents them). Clients and the server build them
// with the same functions so the two can never drift apart.

// RegistrationStatement is signed under keys.ContextRegistration by a registering device.
func RegistrationStatement(username string, identityKey []byte) []byte {
	b := appendShort(nil, username)
	return append(b, identityKey...)
}

// LoginStatement is signed under keys.ContextLoginChallenge to log in.
func LoginStatement(username string, deviceID uint32, nonce []byte) []byte {
	b := appendShort(nil, username)
	b = binary.BigEndian.AppendUint32(b, deviceID)
	return append(b, nonce...)
}

// DeviceLinkStatement is signed under keys.ContextDeviceLink by a device asking to join.
func DeviceLinkStatement(username string, identityKey []byte, deviceName string) []byte {
	b := appendShort(nil, username)
	b = append(b, identityKey...)
	return appendShort(b, deviceName)
}

// DeviceLinkStatusStatement is signed under ContextDeviceLinkStatus to poll a link.
func DeviceLinkStatusStatement(linkID string) []byte {
	return appendShort(nil, linkID)
}

// appendShort appends u8(len(s)) || s. Callers bound s to 255 bytes (every field signed
// this way has a smaller documented maximum); longer strings are cut so that a bad
// request fails signature checks instead of panicking.
func appendShort(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}
