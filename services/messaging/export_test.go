package messaging

import (
	"context"

	"github.com/guardyn/guardyn/libs/msgstore"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// StoredDeliveriesForTest is what a Receive stream delivers for msgs, group log notices
// resolved.
func (s *Server) StoredDeliveriesForTest(ctx context.Context, msgs []msgstore.Message) ([]*messagingv1.Delivery, error) {
	out, _, err := s.storedDeliveries(ctx, msgs, nil, 1<<62)
	return out, err
}

// GroupLogInboxForTest is the message store inbox that holds group gid's log.
func GroupLogInboxForTest(gid []byte) msgstore.Inbox { return logInbox(gid) }

// SweepWelcomesForTest runs one sweep of expired Welcomes.
func (s *Server) SweepWelcomesForTest(ctx context.Context) (int, error) { return s.sweepWelcomes(ctx) }

// DeviceOfCredentialForTest exposes the service's reading of a client credential.
func DeviceOfCredentialForTest(identity []byte) (string, uint32, bool) {
	m, ok := deviceOfCredential(identity)
	return m.UserID, m.DeviceID, ok
}

// ProposeRemovalsForTest runs what a removal event of user's devices does to groups.
func (s *Server) ProposeRemovalsForTest(ctx context.Context, user string, devices []uint32) error {
	return s.proposeRemovals(ctx, user, devices)
}
