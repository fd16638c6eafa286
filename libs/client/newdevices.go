package client

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnverifiedDevices reports a send refused in strict mode (Config.RequireVerified)
// because the recipient has devices that appeared after the last Trust or first contact.
// The error is an *UnverifiedDevicesError.
var ErrUnverifiedDevices = errors.New("client: recipient has unverified new devices")

// NewDevice is a device that appeared on an account after this device first met it (or,
// for this device's own account, one it did not approve itself). It is used for sending,
// but the safety number changed because of it: a server adding a "ghost" device to an
// account would receive a copy of everything sent to it, so the user is warned until Trust
// (or remove-device, on one's own account).
type NewDevice struct {
	// Username is the account; OwnAccount is set when it is this device's own.
	Username   string
	OwnAccount bool
	DeviceID   uint32
	// Fingerprint of the device's identity key (see Fingerprint).
	Fingerprint string
	// Seen is when this device first learned of it.
	Seen time.Time
}

// UnverifiedDevicesError is the strict-mode refusal to send to an account with new,
// unverified devices. It matches ErrUnverifiedDevices with errors.Is.
type UnverifiedDevicesError struct {
	Username string
	Devices  []NewDevice
}

func (e *UnverifiedDevicesError) Error() string {
	ids := make([]string, len(e.Devices))
	for i, d := range e.Devices {
		ids[i] = fmt.Sprintf("%d (fingerprint %s)", d.DeviceID, d.Fingerprint)
	}
	if len(e.Devices) > 0 && e.Devices[0].OwnAccount {
		return fmt.Sprintf("client: strict mode: refusing to send: your account has new device(s) %s that this device did not approve; "+
			"remove them with remove-device, or run trust %s if you linked them", strings.Join(ids, ", "), e.Username)
	}
	return fmt.Sprintf("client: strict mode: refusing to send to %s: new device(s) %s changed the safety number; "+
		"compare safety numbers out of band, then run trust %s", e.Username, strings.Join(ids, ", "), e.Username)
}

// Is makes errors.Is(err, ErrUnverifiedDevices) true.
func (e *UnverifiedDevicesError) Is(target error) bool { return target == ErrUnverifiedDevices }

// pinNew pins a device of name's already known account that this device had not seen: its
// key is used, so sends keep working, but it is flagged unverified and reported in the
// cycle's discoveries.
func (s *state) pinNew(name string, c *contact, id uint32, key []byte) *peerDevice {
	d := c.Devices[id]
	if d == nil {
		d = &peerDevice{}
		c.Devices[id] = d
	}
	d.IdentityKey, d.Unverified, d.Seen = key, true, s.now
	s.discovered = append(s.discovered, s.newDevice(name, id, d))
	return d
}

func (s *state) newDevice(name string, id uint32, d *peerDevice) NewDevice {
	return NewDevice{Username: name, OwnAccount: name == s.Username, DeviceID: id, Fingerprint: Fingerprint(d.IdentityKey), Seen: d.Seen}
}

// unverified lists name's unverified devices in id order.
func (s *state) unverified(name string) []NewDevice {
	c := s.Contacts[name]
	if c == nil {
		return nil
	}
	var out []NewDevice
	for _, id := range c.sortedDevices() {
		if d := c.Devices[id]; d.Unverified && d.IdentityKey != nil {
			out = append(out, s.newDevice(name, id, d))
		}
	}
	return out
}

// UnverifiedDevices lists the devices of username that appeared since the last Trust or
// first contact (username "" means this device's own account: its devices that this
// device did not approve). It reads the profile only; the lists grow as Send, Listen,
// Devices and SafetyNumber learn of devices.
func (c *Client) UnverifiedDevices(username string) ([]NewDevice, error) {
	s, err := c.view()
	if err != nil {
		return nil, err
	}
	if username == "" {
		username = s.Username
	}
	return s.unverified(strings.ToLower(username)), nil
}
