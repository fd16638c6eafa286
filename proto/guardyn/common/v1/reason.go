package commonv1

import "strings"

// ErrorDomain is the google.rpc.ErrorInfo domain of every Guardyn error.
const ErrorDomain = "guardyn.dev"

// reasonPrefix is the enum value prefix that ErrorInfo reasons drop.
const reasonPrefix = "ERROR_REASON_"

// Reason returns the string sent as google.rpc.ErrorInfo.reason, e.g. "USERNAME_TAKEN".
// An undefined value yields its number, which no client will mistake for a known reason.
func (r ErrorReason) Reason() string {
	return strings.TrimPrefix(r.String(), reasonPrefix)
}

// ParseErrorReason maps an ErrorInfo reason back to its enum value; ok is false for reasons this
// build does not know (newer servers may send more).
func ParseErrorReason(reason string) (r ErrorReason, ok bool) {
	if reason == "" || strings.HasPrefix(reason, reasonPrefix) {
		return ErrorReason_ERROR_REASON_UNSPECIFIED, false
	}
	v, ok := ErrorReason_value[reasonPrefix+reason]
	if !ok || v == int32(ErrorReason_ERROR_REASON_UNSPECIFIED) {
		return ErrorReason_ERROR_REASON_UNSPECIFIED, false
	}
	return ErrorReason(v), true
}
