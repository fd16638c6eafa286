package notification

import (
	"fmt"
	"os"
	"path/filepath"
)

// ProviderFiles names the credentials of each push service, as an operator configures
// them; empty fields leave that platform off.
type ProviderFiles struct {
	// VAPIDKeyFile holds the Web Push application server key; created on first use.
	VAPIDKeyFile string
	// VAPIDSubject is the contact in VAPID JWTs (mailto: or https: URL); required for Web
	// Push.
	VAPIDSubject string
	// APNsKeyFile is the .p8 key from Apple, with its key id and team id.
	APNsKeyFile, APNsKeyID, APNsTeamID string
	// FCMCredentialsFile is the Firebase service account JSON.
	FCMCredentialsFile string
}

// Providers builds the providers the files configure.
func (f ProviderFiles) Providers() (web *WebPush, apns *APNs, fcm *FCM, err error) {
	if f.VAPIDKeyFile != "" && f.VAPIDSubject != "" {
		key, err := LoadOrCreateVAPIDKey(f.VAPIDKeyFile)
		if err != nil {
			return nil, nil, nil, err
		}
		if web, err = NewWebPush(WebPushConfig{VAPIDKey: key, Subject: f.VAPIDSubject}); err != nil {
			return nil, nil, nil, err
		}
	}
	if f.APNsKeyFile != "" {
		p8, err := os.ReadFile(filepath.Clean(f.APNsKeyFile))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("apns key: %w", err)
		}
		key, err := ParseAPNsKey(p8)
		if err != nil {
			return nil, nil, nil, err
		}
		if apns, err = NewAPNs(APNsConfig{Key: key, KeyID: f.APNsKeyID, TeamID: f.APNsTeamID}); err != nil {
			return nil, nil, nil, err
		}
	}
	if f.FCMCredentialsFile != "" {
		sa, err := os.ReadFile(filepath.Clean(f.FCMCredentialsFile))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("fcm credentials: %w", err)
		}
		if fcm, err = NewFCM(FCMConfig{ServiceAccountJSON: sa}); err != nil {
			return nil, nil, nil, err
		}
	}
	return web, apns, fcm, nil
}

// SetProviders sets the providers that are not nil (a nil *WebPush in the Provider
// interface would not compare equal to nil).
func (c *Config) SetProviders(web *WebPush, apns *APNs, fcm *FCM) {
	if web != nil {
		c.WebPush = web
	}
	if apns != nil {
		c.APNs = apns
	}
	if fcm != nil {
		c.FCM = fcm
	}
}
