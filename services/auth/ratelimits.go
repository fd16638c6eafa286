package auth

import "github.com/guardyn/guardyn/libs/ratelimit"

// DefaultRateLimits gives the limit of every action the service checks (Limiter keys are
// "action|caller", the caller being a user id, a username or, before login, the peer
// address). It is generous to people and tight on what an attacker repeats: bundle
// fetches consume one-time prekeys, logins and registrations guess or flood. Logins are
// limited per username and per address, so one address cannot spread guesses over many
// names.
func DefaultRateLimits() ratelimit.Policy {
	per := func(perSecond float64, burst int) ratelimit.Config {
		return ratelimit.Config{Rate: perSecond, Burst: burst, MaxKeys: 1 << 16}
	}
	return ratelimit.Policy{
		"register":       per(1, 20),
		"challenge":      per(1, 10),
		"challenge-peer": per(20, 200),
		"login":          per(1, 10),
		"login-peer":     per(20, 200),
		"refresh":        per(10, 100),
		"link":           per(0.2, 5),
		"link-status":    per(2, 20),
		// Starting a conversation with many devices fetches many bundles at once;
		// draining one device's pool takes sustained fetches well beyond this.
		"bundles":             per(2, 100),
		"bundles-target":      per(0.5, 20),
		"bundles-pair":        per(1.0/600, 5),
		"lookup":              per(5, 100),
		"export":              per(0.1, 2),
		"certificate":         per(1, 20),
		"upload-prekeys":      per(1, 20),
		"upload-key-packages": per(1, 20),
		"claim-key-packages":  per(2, 100),
		// Per (caller, target) and per target: one caller cannot drain a target's key
		// packages, nor keep its budget used up for others.
		"claim-key-packages-pair":   per(1.0/60, 10),
		"claim-key-packages-target": per(0.1, 50),
		// Reads and changes of one's own account.
		"account":    per(20, 200),
		"trust-root": per(10, 100),
	}
}
