package client

import (
	"context"
	"fmt"
	"strings"

	"github.com/guardyn/guardyn/libs/crypto/mls"
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

// ProcessGroupMessageForTest processes an MLS message in the named group as a delivery
// would (with this device's trusted external senders), without saving the group.
func (c *Client) ProcessGroupMessageForTest(name string, msg []byte) error {
	s, err := c.view()
	if err != nil {
		return err
	}
	_, g, err := s.loadGroup(name)
	if err != nil {
		return err
	}
	_, err = g.Process(msg)
	return err
}

// GroupIDEpochForTest is the named group's MLS group id and epoch on this device.
func (c *Client) GroupIDEpochForTest(name string) ([]byte, uint64, error) {
	s, err := c.view()
	if err != nil {
		return nil, 0, err
	}
	_, g, err := s.loadGroup(name)
	if err != nil {
		return nil, 0, err
	}
	return g.GroupID(), g.Epoch(), nil
}

// AddExternalSenderForTest commits, as a member that lifted its own restriction, a
// GroupContextExtensions listing es after the group's external senders.
func (c *Client) AddExternalSenderForTest(ctx context.Context, name string, es mls.ExternalSender) error {
	return c.commitGroup(ctx, name, func(s *state, g *mls.Group) (*commitPlan, error) {
		g.SetTrustedExternalSenders(nil)
		cur, err := g.ExternalSenders()
		if err != nil {
			return nil, err
		}
		var exts []mls.Extension
		for _, e := range g.Extensions() {
			if e.Type != mls.ExternalSendersExtension(nil).Type {
				exts = append(exts, e)
			}
		}
		exts = append(exts, mls.ExternalSendersExtension(append(cur, es)))
		return &commitPlan{opts: mls.CommitOptions{GroupContextExtensions: exts}}, nil
	}, false)
}

// NextCommitRemovesForTest is how many devices an empty commit of this device would
// remove now (by the proposals it holds), without sending or saving anything.
func (c *Client) NextCommitRemovesForTest(name string) (int, error) {
	s, err := c.view()
	if err != nil {
		return 0, err
	}
	_, g, err := s.loadGroup(name)
	if err != nil {
		return 0, err
	}
	before := len(g.Members())
	if _, err := g.Commit(mls.CommitOptions{}); err != nil {
		return 0, err
	}
	if err := g.MergePendingCommit(); err != nil {
		return 0, err
	}
	return before - len(g.Members()), nil
}
