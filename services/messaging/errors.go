package messaging

// Stable ErrorInfo reasons returned by the messaging service, as documented in
// proto/guardyn/messaging/v1/messaging.proto.
const (
	reasonMalformedRequest = "MALFORMED_REQUEST"
	reasonUserNotFound     = "USER_NOT_FOUND"
	reasonStaleDeviceList  = "STALE_DEVICE_LIST"
	reasonInboxFull        = "INBOX_FULL"
	reasonRateLimited      = "RATE_LIMITED"
	reasonSuperseded       = "STREAM_SUPERSEDED"
	reasonDeviceRemoved    = "DEVICE_REMOVED"
	reasonGroupExists      = "GROUP_EXISTS"
	reasonGroupNotFound    = "GROUP_NOT_FOUND"
	reasonNotGroupMember   = "NOT_GROUP_MEMBER"
	reasonEpochConflict    = "EPOCH_CONFLICT"
	reasonEpochMismatch    = "EPOCH_MISMATCH"
	reasonWelcomeNotFound  = "WELCOME_NOT_FOUND"
	reasonDeviceNotFound   = "DEVICE_NOT_FOUND"
	reasonLimitExceeded    = "LIMIT_EXCEEDED"
	// reasonDirectoryUnavailable comes with Unavailable: the device directory could not
	// answer; retry.
	reasonDirectoryUnavailable = "DIRECTORY_UNAVAILABLE"
	// reasonStoreUnavailable comes with Unavailable: the message store (a cluster
	// backend) could not answer; retry, with the same client_message_id.
	reasonStoreUnavailable = "STORE_UNAVAILABLE"
)
