package platform

import (
	"fmt"
	"strings"

	"github.com/guardyn/guardyn/libs/ratelimit"
)

// Policy gives the rate limit of each action the services name ("bundles", "login",
// "send", ...); an action without an entry is not limited. The services key every check
// by action and caller (a user id, or the peer address before login).
type Policy map[string]ratelimit.Config

// DefaultPolicy is generous to people and tight on what an attacker would repeat: bundle
// fetches (which consume one-time prekeys), logins and registrations.
func DefaultPolicy() Policy {
	per := func(perSecond float64, burst int) ratelimit.Config {
		return ratelimit.Config{Rate: perSecond, Burst: burst, MaxKeys: 1 << 16}
	}
	return Policy{
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

// limiter implements the services' Allow(key) over one token bucket set per action.
type limiter struct {
	actions map[string]*ratelimit.Limiter
}

func newLimiter(p Policy) (*limiter, error) {
	l := &limiter{actions: make(map[string]*ratelimit.Limiter, len(p))}
	for action, cfg := range p {
		rl, err := ratelimit.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("platform: rate limit %q: %w", action, err)
		}
		l.actions[action] = rl
	}
	return l, nil
}

// Allow takes keys of the form "action|caller".
func (l *limiter) Allow(key string) bool {
	action, _, _ := strings.Cut(key, "|")
	rl, ok := l.actions[action]
	if !ok {
		return true
	}
	allowed, _ := rl.Allow(key)
	return allowed
}
