package client

import (
	"bytes"
	"testing"

	"github.com/guardyn/guardyn/services/auth"
)

// TestStatementsMatchServer pins the client's copies of the signed statements to the
// server's builders, so the two cannot drift apart.
func TestStatementsMatchServer(t *testing.T) {
	ik := bytes.Repeat([]byte{4}, 65)
	nonce := bytes.Repeat([]byte{7}, 32)
	long := string(bytes.Repeat([]byte{'x'}, 300))
	for _, name := range []string{"alice", "", long} {
		if got, want := registrationStatement(name, ik), auth.RegistrationStatement(name, ik); !bytes.Equal(got, want) {
			t.Errorf("registration statement for %q: %x, server %x", name, got, want)
		}
		if got, want := loginStatement(name, 7, nonce), auth.LoginStatement(name, 7, nonce); !bytes.Equal(got, want) {
			t.Errorf("login statement for %q: %x, server %x", name, got, want)
		}
		if got, want := deviceLinkStatement(name, ik, "laptop"), auth.DeviceLinkStatement(name, ik, "laptop"); !bytes.Equal(got, want) {
			t.Errorf("device link statement for %q: %x, server %x", name, got, want)
		}
		if got, want := deviceLinkStatusStatement(name), auth.DeviceLinkStatusStatement(name); !bytes.Equal(got, want) {
			t.Errorf("link status statement for %q: %x, server %x", name, got, want)
		}
	}
	if contextDeviceLinkStatus != auth.ContextDeviceLinkStatus {
		t.Errorf("link status context %q, server %q", contextDeviceLinkStatus, auth.ContextDeviceLinkStatus)
	}
}
