package media

import "github.com/guardyn/guardyn/libs/ratelimit"

// DefaultRateLimits gives the limit of every action the service checks (Limiter keys are
// "action|user id"): generous for people sending photos and videos, bounded for scripts.
// Stored bytes are bounded by the quotas; these bound the request and byte rates.
func DefaultRateLimits() ratelimit.Policy {
	per := func(perSecond float64, burst int) ratelimit.Config {
		return ratelimit.Config{Rate: perSecond, Burst: burst, MaxKeys: 1 << 16}
	}
	return ratelimit.Policy{
		"media":          per(20, 200),
		"media-upload":   {Rate: 512 << 20, Burst: 1 << 30, MaxKeys: 1 << 16},
		"media-download": {Rate: 1 << 30, Burst: 2 << 30, MaxKeys: 1 << 16},
	}
}
