package client

// SessionsForTest returns the encoded sessions this device holds with a contact's device.
func (c *Client) SessionsForTest(username string, deviceID uint32) ([][]byte, error) {
	s, err := c.view()
	if err != nil {
		return nil, err
	}
	return s.Contacts[username].Devices[deviceID].Sessions, nil
}

// SetSessionsForTest replaces the encoded sessions with a contact's device.
func (c *Client) SetSessionsForTest(username string, deviceID uint32, sessions [][]byte) error {
	return c.cycle(func(s *state) error {
		s.Contacts[username].Devices[deviceID].Sessions = sessions
		return nil
	})
}
