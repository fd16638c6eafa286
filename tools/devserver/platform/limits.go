package platform

import (
	"maps"

	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/services/auth"
	"github.com/guardyn/guardyn/services/media"
	"github.com/guardyn/guardyn/services/messaging"
)

// DefaultPolicy is the rate limits of every service in the platform.
func DefaultPolicy() ratelimit.Policy {
	p := auth.DefaultRateLimits()
	maps.Copy(p, messaging.DefaultRateLimits())
	maps.Copy(p, media.DefaultRateLimits())
	return p
}
