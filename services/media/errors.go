package media

// Stable ErrorInfo reasons returned by the media service, as documented in
// proto/guardyn/media/v1/media.proto.
const (
	reasonMalformedRequest  = "MALFORMED_REQUEST"
	reasonUploadTooLarge    = "UPLOAD_TOO_LARGE"
	reasonQuotaExceeded     = "QUOTA_EXCEEDED"
	reasonOffsetMismatch    = "OFFSET_MISMATCH"
	reasonUploadNotFound    = "UPLOAD_NOT_FOUND"
	reasonUploadCompleted   = "UPLOAD_COMPLETED"
	reasonUploadIncomplete  = "UPLOAD_INCOMPLETE"
	reasonHashMismatch      = "HASH_MISMATCH"
	reasonRangeInvalid      = "RANGE_INVALID"
	reasonBlobNotFound      = "BLOB_NOT_FOUND"
	reasonCapabilityInvalid = "CAPABILITY_INVALID"
	reasonCapabilityExpired = "CAPABILITY_EXPIRED"
	reasonCapabilityRevoked = "CAPABILITY_REVOKED"
	reasonRateLimited       = "RATE_LIMITED"
	reasonTokenMissing      = "TOKEN_MISSING"
)
