package client

import "context"

// BearerForTest exposes the authenticated context so tests can call the raw API as this
// device.
func (c *Client) BearerForTest(ctx context.Context) (context.Context, error) {
	return c.freshBearer(ctx)
}
