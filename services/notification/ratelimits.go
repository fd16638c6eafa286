package notification

import "github.com/guardyn/guardyn/libs/ratelimit"

// DefaultRateLimits gives the limit of every action the service checks (Limiter keys are
// "action|caller"): a device registers a target when its app starts or its token rotates.
func DefaultRateLimits() ratelimit.Policy {
	return ratelimit.Policy{
		"push-register": {Rate: 0.1, Burst: 10, MaxKeys: 1 << 16},
		"push-list":     {Rate: 1, Burst: 10, MaxKeys: 1 << 16},
	}
}
