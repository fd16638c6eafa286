package client

import (
	"context"

	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
)

// KillUploadForTest makes the next uploads stop, as a killed process would, once kill
// returns an error after a chunk was sent; nil restores normal uploads.
func (c *Client) KillUploadForTest(kill func(uploadID string, sent int64) error) { c.afterChunk = kill }

// CommittedForTest asks the server how much of an upload is committed.
func (c *Client) CommittedForTest(ctx context.Context, uploadID string) (int64, error) {
	actx, err := c.freshBearer(ctx)
	if err != nil {
		return 0, err
	}
	st, err := c.media.GetUploadStatus(actx, &mediav1.GetUploadStatusRequest{UploadId: uploadID})
	return int64(st.GetCommittedOffset()), err
}

// PendingUploadsForTest is the number of unfinished uploads in the vault.
func (c *Client) PendingUploadsForTest() (int, error) {
	s, err := c.view()
	if err != nil {
		return 0, err
	}
	return len(s.Uploads), nil
}
