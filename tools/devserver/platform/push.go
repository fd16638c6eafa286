package platform

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/services/notification"
	"github.com/guardyn/guardyn/services/presence"
)

// startPresenceAndPush starts the presence service on the bus's presence bucket and the
// notification service with its consumer of delivery notices; both keep their durable state
// in the platform's kv store.
func (p *Platform) startPresenceAndPush(ctx context.Context, cfg Config, store kv.Store, b *bus.Bus, limits *ratelimit.Actions, pushes notification.Metrics) (*presence.Server, *notification.Server, error) {
	bucket, err := b.PresenceBucket(ctx, cfg.PresenceTTL)
	if err != nil {
		return nil, nil, fmt.Errorf("platform: %w", err)
	}
	presSvc, err := presence.New(presence.Config{Store: store, Bucket: bucket, Conn: b.Conn(), Limits: limits, Logger: cfg.Logger})
	if err != nil {
		return nil, nil, err
	}
	p.stop = append(p.stop, func() { presSvc.Close() })

	ncfg := notification.Config{
		Store: store, Presence: bucket, Limits: limits, Metrics: pushes, Logger: cfg.Logger,
		WebPush: cfg.WebPush, APNs: cfg.APNs, FCM: cfg.FCM,
		AllowPrivateEndpoints: cfg.AllowPrivatePushEndpoints, CoalesceWindow: cfg.PushCoalesceWindow,
	}
	if ncfg.WebPush == nil {
		subject := cfg.VAPIDSubject
		if subject == "" {
			subject = "mailto:postmaster@localhost"
		}
		web, _, _, err := notification.ProviderFiles{
			VAPIDKeyFile: filepath.Join(cfg.DataDir, "keys", "vapid.key"), VAPIDSubject: subject,
		}.Providers()
		if err != nil {
			return nil, nil, err
		}
		ncfg.WebPush = web
	}
	pushSvc, err := notification.New(ncfg)
	if err != nil {
		return nil, nil, err
	}
	consumer, err := pushSvc.Consume(context.WithoutCancel(ctx), b)
	if err != nil {
		return nil, nil, err
	}
	p.stop = append(p.stop, consumer.Stop)
	return presSvc, pushSvc, nil
}
