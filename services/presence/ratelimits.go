package presence

import "github.com/guardyn/guardyn/libs/ratelimit"

// DefaultRateLimits gives the limit of every action the service checks (Limiter keys are
// "action|caller"): a client heartbeats every bus.PresenceHeartbeat and changes its status
// when its user does, so these leave ample room for people and little for floods.
func DefaultRateLimits() ratelimit.Policy {
	per := func(perSecond float64, burst int) ratelimit.Config {
		return ratelimit.Config{Rate: perSecond, Burst: burst, MaxKeys: 1 << 16}
	}
	return ratelimit.Policy{
		"presence-status":    per(1, 10),
		"presence-heartbeat": per(0.5, 5),
		"presence-watch":     per(0.2, 10),
		"presence-lookup":    per(5, 20),
		"presence-privacy":   per(0.2, 10),
	}
}
