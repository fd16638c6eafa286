package messaging

import "github.com/guardyn/guardyn/libs/ratelimit"

// DefaultRateLimits gives the limit of every action the service checks (Limiter keys are
// "action|caller", the caller a user id or a device): generous for people, bounded for
// scripts that flood.
func DefaultRateLimits() ratelimit.Policy {
	per := func(perSecond float64, burst int) ratelimit.Config {
		return ratelimit.Config{Rate: perSecond, Burst: burst, MaxKeys: 1 << 16}
	}
	return ratelimit.Policy{
		"send":      per(2000, 5000),
		"ephemeral": per(20, 100),
		"receive":   per(1, 20),
		"group":     per(50, 500),
		"ack":       per(2000, 5000),
		// Sealed bytes sent per account, so that the request limit is no licence to
		// send the largest requests: 16 MiB/s, bursts of 64 MiB (16 requests of 16
		// envelopes of 256 KiB).
		"send-bytes": {Rate: 16 << 20, Burst: 64 << 20, MaxKeys: 1 << 16},
	}
}
