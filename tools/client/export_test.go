package client

import (
	"context"
	"fmt"
	"strings"
)

// BearerForTest exposes the authenticated context so tests can call the raw API as this
// device.
func (c *Client) BearerForTest(ctx context.Context) (context.Context, error) {
	return c.freshBearer(ctx)
}

// RepinForTest replaces the identity key this device pinned for one device of a contact,
// as if the contact's device had shown another key on first contact; the server's real key
// then looks like a change.
func (c *Client) RepinForTest(username string, deviceID uint32, key []byte) error {
	return c.cycle(func(s *state) error {
		s.Contacts[username].Devices[deviceID].IdentityKey = key
		return nil
	})
}

// FillHistoryForTest appends n text entries to the local history, as months of use would.
func (c *Client) FillHistoryForTest(n int) error {
	return c.cycle(func(s *state) error {
		for i := range n {
			s.appendLog(LogEntry{ID: fmt.Sprintf("%032x", i), Peer: "someone", Kind: "text", Body: strings.Repeat("x", 80), Sent: c.now()})
		}
		return nil
	})
}

// StateSizeForTest is the size of the encrypted state file.
func (c *Client) StateSizeForTest() (int, error) {
	b, err := c.vault.Read()
	return len(b), err
}

// GroupSuiteForTest is the MLS cipher suite of the named group on this device.
func (c *Client) GroupSuiteForTest(name string) (uint16, error) {
	s, err := c.view()
	if err != nil {
		return 0, err
	}
	_, g, err := s.loadGroup(name)
	if err != nil {
		return 0, err
	}
	return uint16(g.CipherSuite()), nil
}
