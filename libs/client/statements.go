package client

import (
	"encoding/binary"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/keys"
)

// The statements a device signs for the auth API, byte for byte as
// proto/guardyn/auth/v1/auth.proto defines them. services/auth exports the same builders;
// they are restated here so the client does not link the whole server (an embedded NATS
// server among it) into the CLI, and statements_test.go checks both agree.

// contextDeviceLinkStatus is the signature context of GetDeviceLinkStatus.
const contextDeviceLinkStatus keys.Context = "device-link-status"

func registrationStatement(username string, identityKey []byte) []byte {
	return append(appendShort(nil, username), identityKey...)
}

func loginStatement(username string, deviceID uint32, nonce []byte) []byte {
	b := binary.BigEndian.AppendUint32(appendShort(nil, username), deviceID)
	return append(b, nonce...)
}

func deviceLinkStatement(username string, identityKey []byte, deviceName string) []byte {
	return appendShort(append(appendShort(nil, username), identityKey...), deviceName)
}

func deviceLinkStatusStatement(linkID string) []byte { return appendShort(nil, linkID) }

// appendShort appends u8(len(s)) || s. Every signed string has a documented maximum below
// 256 bytes; the server rejects longer ones before checking signatures.
func appendShort(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	return append(append(b, byte(len(s))), s...)
}

// errorDomain is the ErrorInfo domain of Guardyn's server errors (docs/api.md).
const errorDomain = "guardyn.dev"

// Reason returns the stable reason (docs/api.md) of a server error wrapped anywhere in err,
// such as "USER_NOT_FOUND" or "STALE_DEVICE_LIST", or "" if err carries none.
func Reason(err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return ""
	}
	for _, d := range se.GRPCStatus().Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info.GetReason()
		}
	}
	return ""
}
