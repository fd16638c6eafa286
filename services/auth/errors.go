package auth

// Stable ErrorInfo reasons returned by the auth service, as documented in
// proto/guardyn/auth/v1/auth.proto. Clients switch on these strings.
const (
	reasonInvalidUsername        = "INVALID_USERNAME"
	reasonInvalidIdentityKey     = "INVALID_IDENTITY_KEY"
	reasonBadSignature           = "BAD_SIGNATURE"
	reasonMalformedRequest       = "MALFORMED_REQUEST"
	reasonUsernameTaken          = "USERNAME_TAKEN"
	reasonRateLimited            = "RATE_LIMITED"
	reasonLoginFailed            = "LOGIN_FAILED"
	reasonChallengeExpired       = "CHALLENGE_EXPIRED"
	reasonRefreshTokenInvalid    = "REFRESH_TOKEN_INVALID"
	reasonRefreshTokenExpired    = "REFRESH_TOKEN_EXPIRED"
	reasonRefreshTokenReused     = "REFRESH_TOKEN_REUSED"
	reasonDeviceRemoved          = "DEVICE_REMOVED"
	reasonLinkNotFound           = "LINK_NOT_FOUND"
	reasonLinkAlreadyDecided     = "LINK_ALREADY_DECIDED"
	reasonDeviceLimitReached     = "DEVICE_LIMIT_REACHED"
	reasonDeviceNotFound         = "DEVICE_NOT_FOUND"
	reasonLastDevice             = "LAST_DEVICE"
	reasonConfirmationMismatch   = "CONFIRMATION_MISMATCH"
	reasonInvalidPreKey          = "INVALID_PREKEY"
	reasonBadPreKeySignature     = "BAD_PREKEY_SIGNATURE"
	reasonDuplicatePreKeyID      = "DUPLICATE_PREKEY_ID"
	reasonNoSignedPreKey         = "NO_SIGNED_PREKEY"
	reasonPreKeyLimitReached     = "PREKEY_LIMIT_REACHED"
	reasonKeyPackageLimitReached = "KEY_PACKAGE_LIMIT_REACHED"
	reasonUserNotFound           = "USER_NOT_FOUND"
)
