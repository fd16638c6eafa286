package client_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// strict opens a second client on name's profile in strict mode.
func strict(t *testing.T, p *clienttest.Platform, name string) *client.Client {
	t.Helper()
	cfg := p.Config(name)
	cfg.RequireVerified = true
	c, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func fingerprint(t *testing.T, c *client.Client) string {
	t.Helper()
	who, err := c.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	return who.Fingerprint
}

func deviceIDs(nds []client.NewDevice) []uint32 {
	var out []uint32
	for _, nd := range nds {
		out = append(out, nd.DeviceID)
	}
	return out
}

func ofKind(evs []client.Event, kind client.EventKind) []client.Event {
	var out []client.Event
	for _, ev := range evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// TestContactNewDeviceFlagged: bob links a second device after alice's first contact.
// Alice's send reaches it (no blocking by default) but records it as unverified with its
// fingerprint; the safety number reports the change until trust.
func TestContactNewDeviceFlagged(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "first contact"); err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, bob)
	before, err := alice.SafetyNumber(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(before.NewDevices) != 0 || before.Changed != nil {
		t.Fatalf("safety number before any new device = %+v", before)
	}

	bob2 := p.Link(t, bob, "bob-laptop")
	if _, err := alice.Send(ctx, "bob", "to both"); err != nil {
		t.Fatalf("send after bob's new device: %v (sends must keep working by default)", err)
	}
	nds, err := alice.UnverifiedDevices("bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(nds) != 1 || nds[0].DeviceID != 2 || nds[0].Username != "bob" || nds[0].OwnAccount || nds[0].Fingerprint != fingerprint(t, bob2) || nds[0].Seen.IsZero() {
		t.Fatalf("alice's unverified devices of bob = %+v, want device 2 with fingerprint %s", nds, fingerprint(t, bob2))
	}
	if got := messages(clienttest.Drain(t, bob2)); !slices.Equal(got, []string{"to both"}) {
		t.Fatalf("bob's new device got %q", got)
	}

	after, err := alice.SafetyNumber(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if after.Number == before.Number || !slices.Equal(deviceIDs(after.NewDevices), []uint32{2}) || after.Changed != nil {
		t.Fatalf("safety number after bob's new device = %+v (before %s), want a new number naming device 2", after, before.Number)
	}
	if err := alice.Trust(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if nds, err := alice.UnverifiedDevices("bob"); err != nil || len(nds) != 0 {
		t.Fatalf("after trust: unverified = %+v, %v", nds, err)
	}
	trusted, err := alice.SafetyNumber(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if trusted.Number != after.Number || len(trusted.NewDevices) != 0 {
		t.Fatalf("safety number after trust = %+v", trusted)
	}
	if err := alice.Trust(ctx, "bob"); !errors.Is(err, client.ErrNothingToTrust) {
		t.Fatalf("second trust: err = %v, want ErrNothingToTrust", err)
	}

	// Bob approved the laptop himself, and the laptop met the phone when it joined: no
	// own-account warning on either side.
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2} {
		devs, err := c.Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != 2 || devs[0].Unverified || devs[1].Unverified {
			t.Fatalf("%s's devices = %+v, want none unverified", name, devs)
		}
		if nds, err := c.UnverifiedDevices(""); err != nil || len(nds) != 0 {
			t.Fatalf("%s's own unverified devices = %+v, %v", name, nds, err)
		}
	}
}

// TestStrictModeRefusesNewDevice: in strict mode, a send to an account with an unverified
// new device fails before anything is sent, again on the next attempt, and works after
// trust.
func TestStrictModeRefusesNewDevice(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "first contact"); err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, bob)
	bob2 := p.Link(t, bob, "bob-laptop")

	careful := strict(t, p, "alice")
	for attempt := 1; attempt <= 2; attempt++ {
		_, err := careful.Send(ctx, "bob", "must not leave")
		var unverified *client.UnverifiedDevicesError
		if !errors.Is(err, client.ErrUnverifiedDevices) || !errors.As(err, &unverified) ||
			unverified.Username != "bob" || !slices.Equal(deviceIDs(unverified.Devices), []uint32{2}) ||
			unverified.Devices[0].Fingerprint != fingerprint(t, bob2) {
			t.Fatalf("attempt %d: strict send: err = %v, want UnverifiedDevicesError naming bob's device 2", attempt, err)
		}
		if err := careful.Typing(ctx, "bob"); !errors.Is(err, client.ErrUnverifiedDevices) {
			t.Fatalf("attempt %d: strict typing: err = %v", attempt, err)
		}
	}
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2} {
		if got := messages(clienttest.Drain(t, c)); len(got) != 0 {
			t.Fatalf("%s received %q from a refused send", name, got)
		}
	}
	if err := careful.Trust(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := careful.Send(ctx, "bob", "verified now"); err != nil {
		t.Fatalf("strict send after trust: %v", err)
	}
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2} {
		if got := messages(clienttest.Drain(t, c)); !slices.Equal(got, []string{"verified now"}) {
			t.Fatalf("%s got %q", name, got)
		}
	}
}

// TestNewDeviceFromIncomingMessage: a message from a device alice has never seen is read,
// preceded by an EventNewDevice naming the device and its fingerprint.
func TestNewDeviceFromIncomingMessage(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "first contact"); err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, bob)
	clienttest.Drain(t, alice)
	bob2 := p.Link(t, bob, "bob-laptop")
	if _, err := bob2.Send(ctx, "alice", "from my laptop"); err != nil {
		t.Fatal(err)
	}
	evs := clienttest.Drain(t, alice)
	newDev := slices.IndexFunc(evs, func(ev client.Event) bool { return ev.Kind == client.EventNewDevice })
	msg := slices.IndexFunc(evs, func(ev client.Event) bool { return ev.Kind == client.EventMessage })
	if newDev < 0 || msg < 0 || newDev > msg {
		t.Fatalf("alice's events = %+v, want a new-device event before the message", evs)
	}
	if ev := evs[newDev]; ev.Peer != "bob" || ev.FromDevice != 2 || ev.Fingerprint != fingerprint(t, bob2) {
		t.Fatalf("new-device event = %+v", ev)
	}
	if evs[msg].Body != "from my laptop" || evs[msg].FromDevice != 2 {
		t.Fatalf("message event = %+v", evs[msg])
	}
	if n := len(ofKind(evs, client.EventNewDevice)); n != 1 {
		t.Fatalf("%d new-device events, want 1", n)
	}
	// Learned once: the next message from the laptop raises no second event, but the
	// device stays unverified until trust.
	if _, err := bob2.Send(ctx, "alice", "again"); err != nil {
		t.Fatal(err)
	}
	if evs := clienttest.Drain(t, alice); len(ofKind(evs, client.EventNewDevice)) != 0 || !slices.Equal(messages(evs), []string{"again"}) {
		t.Fatalf("second drain = %+v", evs)
	}
	if nds, err := alice.UnverifiedDevices("bob"); err != nil || !slices.Equal(deviceIDs(nds), []uint32{2}) {
		t.Fatalf("unverified = %+v, %v", nds, err)
	}
}

// TestOwnAccountDeviceNotApprovedHere: a device approved by another device of the account
// (as a server minting tokens could do) is flagged on this device until trust of the own
// username or its removal; strict mode refuses to copy messages to it.
func TestOwnAccountDeviceNotApprovedHere(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	alice2 := p.Link(t, alice, "alice-laptop")
	if evs := clienttest.Drain(t, alice); len(ofKind(evs, client.EventNewOwnDevice)) != 0 {
		t.Fatalf("alice approved the laptop herself but was warned: %+v", evs)
	}

	ghost := p.Link(t, alice2, "ghost")
	devs, err := alice.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 3 || devs[1].Unverified || !devs[2].Unverified || devs[2].ID != 3 || devs[2].Fingerprint != fingerprint(t, ghost) {
		t.Fatalf("alice's devices = %+v, want device 3 unverified", devs)
	}
	evs := clienttest.Drain(t, alice)
	own := ofKind(evs, client.EventNewOwnDevice)
	if len(own) != 1 || own[0].FromDevice != 3 || own[0].Fingerprint != fingerprint(t, ghost) || own[0].Peer != "alice" {
		t.Fatalf("alice's listen events = %+v, want one own-device warning for device 3", evs)
	}
	if evs := clienttest.Drain(t, alice2); len(ofKind(evs, client.EventNewOwnDevice)) != 0 {
		t.Fatalf("the laptop approved device 3 but was warned: %+v", evs)
	}

	// Strict mode: nothing leaves, since the message would be copied to the unverified own
	// device.
	_, err = strict(t, p, "alice").Send(ctx, "bob", "not for the ghost")
	var unverified *client.UnverifiedDevicesError
	if !errors.As(err, &unverified) || unverified.Username != "alice" || !slices.Equal(deviceIDs(unverified.Devices), []uint32{3}) || !unverified.Devices[0].OwnAccount {
		t.Fatalf("strict send with an unverified own device: err = %v", err)
	}
	if got := messages(clienttest.Drain(t, ghost)); len(got) != 0 {
		t.Fatalf("the unverified own device got %q in strict mode", got)
	}
	if got := messages(clienttest.Drain(t, bob)); len(got) != 0 {
		t.Fatalf("bob got %q from a refused send", got)
	}

	// Accepting it stops the warning.
	if err := alice.Trust(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if evs := clienttest.Drain(t, alice); len(ofKind(evs, client.EventNewOwnDevice)) != 0 {
		t.Fatalf("warned after trust: %+v", evs)
	}

	// Another one, removed instead.
	ghost2 := p.Link(t, alice2, "ghost-2")
	if nds, err := alice.UnverifiedDevices(""); err != nil || len(nds) != 0 {
		t.Fatalf("before alice syncs: unverified = %+v, %v", nds, err)
	}
	evs = clienttest.Drain(t, alice)
	if own := ofKind(evs, client.EventNewOwnDevice); len(own) != 1 || own[0].FromDevice != 4 || own[0].Fingerprint != fingerprint(t, ghost2) {
		t.Fatalf("alice's events = %+v, want a warning for device 4", evs)
	}
	if err := alice.RemoveDevice(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if evs := clienttest.Drain(t, alice); len(ofKind(evs, client.EventNewOwnDevice)) != 0 {
		t.Fatalf("warned after removal: %+v", evs)
	}
	if devs, err := alice.Devices(ctx); err != nil || len(devs) != 3 || slices.ContainsFunc(devs, func(d client.Device) bool { return d.Unverified }) {
		t.Fatalf("devices after removal = %+v, %v", devs, err)
	}
}

// TestContactDeviceRemoval: removing a device of a contact, trusted or still unverified,
// is reflected without errors or warnings.
func TestContactDeviceRemoval(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "first contact"); err != nil {
		t.Fatal(err)
	}
	bob2 := p.Link(t, bob, "bob-laptop")
	if _, err := alice.Send(ctx, "bob", "reaches the laptop"); err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, bob2)
	if err := alice.Trust(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	p.Link(t, bob, "bob-tablet")
	if _, err := alice.Send(ctx, "bob", "reaches the tablet"); err != nil {
		t.Fatal(err)
	}
	if nds, err := alice.UnverifiedDevices("bob"); err != nil || !slices.Equal(deviceIDs(nds), []uint32{3}) {
		t.Fatalf("unverified = %+v, %v", nds, err)
	}

	clienttest.Drain(t, alice)
	if _, err := bob2.Send(ctx, "alice", "sent just before the removal"); err != nil {
		t.Fatal(err)
	}

	// The trusted laptop and the unverified tablet both go.
	for _, id := range []uint32{2, 3} {
		if err := bob.RemoveDevice(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	careful := strict(t, p, "alice")
	if _, err := careful.Send(ctx, "bob", "phone only"); err != nil {
		t.Fatalf("strict send after bob removed his devices: %v", err)
	}
	if nds, err := alice.UnverifiedDevices("bob"); err != nil || len(nds) != 0 {
		t.Fatalf("unverified after removal = %+v, %v", nds, err)
	}
	n, err := alice.SafetyNumber(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if n.Changed != nil || len(n.NewDevices) != 0 {
		t.Fatalf("safety number after removal = %+v, want no warning", n)
	}
	evs := clienttest.Drain(t, bob)
	if got := messages(evs); !slices.Contains(got, "phone only") {
		t.Fatalf("bob got %q", got)
	}
	// The phone also gets the laptop's copy of its last message after the removal.
	for _, ev := range ofKind(evs, client.EventUndecryptable) {
		if !strings.Contains(ev.Err.Error(), "bob device 2") {
			t.Fatalf("bob's phone: unexpected undecryptable delivery: %v", ev.Err)
		}
	}
	if len(ofKind(evs, client.EventNewOwnDevice)) != 0 {
		t.Fatalf("bob's events = %+v", evs)
	}
	// alice dropped the laptop before its last message arrived: it is reported as from a
	// device bob no longer has, not as a new device.
	evs = clienttest.Drain(t, alice)
	if len(ofKind(evs, client.EventNewDevice)) != 0 || len(ofKind(evs, client.EventWarning)) != 0 {
		t.Fatalf("alice's events after bob's removals = %+v", evs)
	}
	if bad := ofKind(evs, client.EventUndecryptable); len(bad) != 1 || !strings.Contains(bad[0].Err.Error(), "bob device 2") {
		t.Fatalf("alice's events = %+v, want the laptop's late message dropped as from an unlisted device", evs)
	}
	if nds, err := alice.UnverifiedDevices("bob"); err != nil || len(nds) != 0 {
		t.Fatalf("the late message re-added a device: %+v, %v", nds, err)
	}
}
