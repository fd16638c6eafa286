package e2e_test

import (
	"regexp"
	"strings"
	"testing"
)

// linkCLI links profile as a new device of username, approved from approver's profile,
// and returns the new device's fingerprint.
func (c *cli) linkCLI(t *testing.T, approver, profile, username string) string {
	t.Helper()
	link, lines := c.background(t, profile, "link", "--device-name", profile, username)
	fp := waitLine(t, lines, regexp.MustCompile(`this device's fingerprint: (.+)$`))[1]
	id := waitLine(t, lines, regexp.MustCompile(`guardyn approve (\S+)`))[1]
	c.ok(t, approver, "approve", id)
	waitLine(t, lines, regexp.MustCompile(`^linked: `))
	if err := link.Wait(); err != nil {
		t.Fatalf("link %s exited with %v", profile, err)
	}
	return fp
}

// TestCLINewDevices: a contact's new device is named with its fingerprint by send, listen
// and safety-number until trust; --require-verified (or GUARDYN_REQUIRE_VERIFIED) refuses
// to send meanwhile. A device added to one's own account from another device is flagged
// by devices and listen until it is removed; ones this device approved are not.
func TestCLINewDevices(t *testing.T) {
	c := buildCLI(t)
	c.ok(t, "alice", "register", "alice")
	c.ok(t, "bob", "register", "bob")
	c.ok(t, "alice", "send", "bob", "first contact")
	c.ok(t, "bob", "listen", "--once")
	before := lastLine(c.ok(t, "alice", "safety-number", "bob"))

	laptop := c.linkCLI(t, "bob", "bob-laptop", "bob")
	if out, errOut, code := c.run(t, "bob", "devices"); code != 0 || strings.Contains(out+errOut, "NEW") || strings.Contains(errOut, "!!!") {
		t.Fatalf("bob approved the laptop himself but devices warns: exit %d\n%s%s", code, out, errOut)
	}

	// Default: the send goes out, with a loud warning.
	out, errOut, code := c.run(t, "alice", "send", "bob", "to both devices")
	if code != 0 || !strings.HasPrefix(out, "sent ") {
		t.Fatalf("send after bob's new device: exit %d, %q %q", code, out, errOut)
	}
	for _, want := range []string{"bob has a new device 2", "fingerprint " + laptop, "safety number with bob changed", "guardyn trust bob"} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("send warning %q lacks %q", errOut, want)
		}
	}
	if out := c.ok(t, "bob-laptop", "listen", "--once"); !strings.Contains(out, "alice: to both devices") {
		t.Fatalf("bob's laptop: %q", out)
	}

	sn := c.ok(t, "alice", "safety-number", "bob")
	if !strings.Contains(sn, "changed since you last trusted bob") || !strings.Contains(sn, "device 2  fingerprint "+laptop) || strings.Contains(sn, before) {
		t.Fatalf("safety-number after the new device: %q (before: %s)", sn, before)
	}

	// Strict mode, by flag and by environment: refused, nothing sent.
	_, errOut, code = c.run(t, "alice", "send", "--require-verified", "bob", "must not leave")
	if code != 1 || !strings.Contains(errOut, "strict mode") || !strings.Contains(errOut, "2 (fingerprint "+laptop+")") {
		t.Fatalf("strict send: exit %d, %q", code, errOut)
	}
	strict := c.command("alice", "send", "bob", "must not leave either")
	strict.Env = append(strict.Env, "GUARDYN_REQUIRE_VERIFIED=1")
	if got, err := strict.CombinedOutput(); err == nil || !strings.Contains(string(got), "strict mode") {
		t.Fatalf("strict send by environment: %v, %q", err, got)
	}
	if out := c.ok(t, "bob-laptop", "listen", "--once"); strings.Contains(out, "must not leave") {
		t.Fatalf("a refused message arrived: %q", out)
	}

	// The laptop writes: alice's listen already knows the device, so it only shows the
	// message; trust then silences every warning.
	c.ok(t, "bob-laptop", "send", "alice", "hello from the laptop")
	if out := c.ok(t, "alice", "listen", "--once"); !strings.Contains(out, "bob: hello from the laptop") {
		t.Fatalf("alice's listen: %q", out)
	}
	if out := c.ok(t, "alice", "trust", "bob"); !strings.Contains(out, "now trusting bob") {
		t.Fatalf("trust: %q", out)
	}
	if sn := c.ok(t, "alice", "safety-number", "bob"); strings.Contains(sn, "changed") {
		t.Fatalf("safety-number after trust: %q", sn)
	}
	out, errOut, code = c.run(t, "alice", "send", "--require-verified", "bob", "verified")
	if code != 0 || errOut != "" {
		t.Fatalf("strict send after trust: exit %d, %q %q", code, out, errOut)
	}

	// A third device of bob, approved from the laptop, not the phone: the phone warns;
	// alice learns of it from a message and listen says so.
	tablet := c.linkCLI(t, "bob-laptop", "bob-tablet", "bob")
	out, errOut, code = c.run(t, "bob", "devices")
	if code != 0 || !strings.Contains(out, "(NEW: not approved from this device)") {
		t.Fatalf("bob's devices: exit %d, %q", code, out)
	}
	if !strings.Contains(errOut, "a new device 3 was added to your account at") || !strings.Contains(errOut, tablet) || !strings.Contains(errOut, "guardyn remove-device 3") {
		t.Fatalf("bob's devices warning: %q", errOut)
	}
	if out := c.ok(t, "bob", "listen", "--once"); !strings.Contains(out, "!!! a new device 3 was added to your account") {
		t.Fatalf("bob's listen: %q", out)
	}
	if out, errOut, _ := c.run(t, "bob-laptop", "devices"); strings.Contains(out+errOut, "NEW") {
		t.Fatalf("the laptop approved the tablet but warns: %q %q", out, errOut)
	}
	c.ok(t, "bob-tablet", "send", "alice", "hello from the tablet")
	out = c.ok(t, "alice", "listen", "--once")
	if !strings.Contains(out, "!!! bob has a new device 3, fingerprint "+tablet) || !strings.Contains(out, "bob: hello from the tablet") {
		t.Fatalf("alice's listen: %q", out)
	}

	// bob removes the tablet: no warning anywhere, and alice's sends work, strict or not.
	c.ok(t, "bob", "remove-device", "3")
	if out, errOut, _ := c.run(t, "bob", "devices"); strings.Contains(out+errOut, "NEW") || strings.Contains(out, "bob-tablet") {
		t.Fatalf("bob's devices after the removal: %q %q", out, errOut)
	}
	out, errOut, code = c.run(t, "alice", "send", "--require-verified", "bob", "tablet gone")
	if code != 0 || errOut != "" {
		t.Fatalf("strict send after the removal: exit %d, %q %q", code, out, errOut)
	}
	if sn := c.ok(t, "alice", "safety-number", "bob"); strings.Contains(sn, "!!!") {
		t.Fatalf("safety-number after the removal: %q", sn)
	}
}
