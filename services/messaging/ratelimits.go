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
		// Sealed bytes one account sends to one device ("sender>user/device"): 1 MiB/s,
		// bursts of 4 MiB (16 envelopes of 256 KiB), so that a device's deliveries are
		// not one sender's to take. An account busy at its send-bytes rate keeps at most
		// 16 of these buckets from refilling, far from their MaxKeys.
		"deliver-bytes": {Rate: 1 << 20, Burst: 4 << 20, MaxKeys: 1 << 16},
		// Delivery bytes a device was sent and did not acknowledge before its stream
		// ended ("user/device"), charged when the stream ends, at most a fresh stream's
		// window (256 KiB): a device in debt may not reopen Receive until it is paid back.
		// 64 KiB/s, 1 MiB deep: a device that drops its stream unacknowledged may do so
		// four times in a row, then every 4 s; one that acknowledges pays nothing.
		"redeliver": {Rate: 64 << 10, Burst: 1 << 20, MaxKeys: 1 << 16},
	}
}
