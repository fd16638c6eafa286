package platform

import "github.com/guardyn/guardyn/libs/ratelimit"

// DefaultPolicy gives the rate limit of each action the services name; they key every
// check by action and caller (a user id, or the peer address before login). It is generous to people and tight on what an attacker would repeat: bundle
// fetches (which consume one-time prekeys), logins and registrations.
func DefaultPolicy() ratelimit.Policy {
	per := func(perSecond float64, burst int) ratelimit.Config {
		return ratelimit.Config{Rate: perSecond, Burst: burst, MaxKeys: 1 << 16}
	}
	return ratelimit.Policy{
		"register":       per(1, 20),
		"challenge":      per(1, 10),
		"challenge-peer": per(20, 200),
		"login":          per(1, 10),
		"refresh":        per(10, 100),
		"link":           per(0.2, 5),
		"link-status":    per(2, 20),
		// Starting a conversation with a large group of devices fetches many bundles;
		// draining one device's prekeys takes sustained fetches well beyond this.
		"bundles":        per(2, 100),
		"bundles-target": per(0.5, 20),
		"lookup":         per(5, 100),
		"export":         per(0.1, 2),
		"send":           per(2000, 5000),
		"ephemeral":      per(20, 100),
		"receive":        per(1, 20),
		"group":          per(50, 500),
	}
}
