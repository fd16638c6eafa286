package client

import "time"

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

// PreKeyTimesForTest returns the creation times of the newest signed and last-resort prekeys
// this device holds, and how many signed prekeys it keeps.
func (c *Client) PreKeyTimesForTest() (spk, lastResort time.Time, signed int, err error) {
	s, err := c.view()
	if err != nil {
		return
	}
	st, err := s.preKeys()
	if err != nil {
		return
	}
	for id := uint32(1); id < 1<<16; id++ {
		if _, e := st.SignedPreKey(id); e == nil {
			signed++
		}
	}
	return st.NewestSignedPreKey().Created(), st.NewestLastResortKEMPreKey().Created(), signed, nil
}
