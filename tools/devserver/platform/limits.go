package platform

import (
	"maps"

	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/services/auth"
	"github.com/guardyn/guardyn/services/media"
	"github.com/guardyn/guardyn/services/messaging"
	"github.com/guardyn/guardyn/services/notification"
	"github.com/guardyn/guardyn/services/presence"
)

// DefaultPolicy is the rate limits of every service in the platform.
func DefaultPolicy() ratelimit.Policy {
	p := auth.DefaultRateLimits()
	maps.Copy(p, messaging.DefaultRateLimits())
	maps.Copy(p, presence.DefaultRateLimits())
	maps.Copy(p, notification.DefaultRateLimits())
	maps.Copy(p, media.DefaultRateLimits())
	return p
}
