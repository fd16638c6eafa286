package presence

// Stable ErrorInfo reasons returned by the presence service, as documented in
// proto/guardyn/presence/v1/presence.proto.
const (
	reasonMalformedRequest = "MALFORMED_REQUEST"
	reasonRateLimited      = "RATE_LIMITED"
	reasonPresenceHidden   = "PRESENCE_HIDDEN"
	reasonWatchLimit       = "WATCH_LIMIT_REACHED"
	// reasonUnavailable comes with Unavailable: the presence bucket could not be written.
	reasonUnavailable = "PRESENCE_UNAVAILABLE"
)
