package notification

// Stable ErrorInfo reasons returned by the notification service, as documented in
// proto/guardyn/notification/v1/notification.proto.
const (
	reasonInvalidPushTarget  = "INVALID_PUSH_TARGET"
	reasonPushTargetNotFound = "PUSH_TARGET_NOT_FOUND"
	reasonRateLimited        = "RATE_LIMITED"
	// reasonUnavailable comes with Unavailable: the store could not be read or written.
	reasonUnavailable = "NOTIFICATION_UNAVAILABLE"
)
