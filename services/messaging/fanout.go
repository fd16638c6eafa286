package messaging

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/outbox"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// fanOutPrefix holds the commit fan-outs not yet stored in every inbox (libs/outbox).
const fanOutPrefix = "msg/fanout/"

// fanOutRecord is what an accepted commit still owes the inboxes: the commit for every
// member device of the epoch it ends but the committer, and a Welcome notice for each
// added device. The Welcome itself is stored once, under welcomeBodyKey.
type fanOutRecord struct {
	Sender   member    `json:"sender"`
	GroupID  []byte    `json:"group_id"`
	Epoch    uint64    `json:"epoch"` // the epoch the commit ends
	Commit   []byte    `json:"commit"`
	To       []member  `json:"to"`
	Welcomed []member  `json:"welcomed,omitempty"`
	At       time.Time `json:"at"`
}

// fanOutID names the fan-out of the commit that ends epoch; ids sort by group, then
// epoch, so the replayer runs a group's fan-outs in order.
func fanOutID(gid []byte, epoch uint64) string {
	return fmt.Sprintf("%s/%020d", hex.EncodeToString(gid), epoch)
}

// errEarlierFanOut holds a fan-out back while the group's previous one is still pending:
// members must see commits in epoch order.
var errEarlierFanOut = errors.New("the fan-out of the previous epoch is still pending")

// deliverFanOut is the outbox handler of commit fan-outs. Message ids derive from the
// commit, so running it twice stores nothing twice.
func (s *Server) deliverFanOut(ctx context.Context, id string, payload []byte) error {
	var r fanOutRecord
	if err := json.Unmarshal(payload, &r); err != nil {
		// Only this package writes entries; one that does not decode can never be
		// delivered, and retrying it for ever would hide everything behind it.
		s.log.ErrorContext(ctx, "messaging: dropping undecodable fan-out", "fanout", id, "err", err)
		return nil
	}
	if r.Epoch > 0 {
		var earlier bool
		if err := s.groups.View(ctx, func(tx kv.Tx) error {
			var err error
			earlier, err = s.fanouts.Pending(tx, fanOutID(r.GroupID, r.Epoch-1))
			return err
		}); err != nil {
			return err
		}
		if earlier {
			return errEarlierFanOut
		}
	}
	p := authn.Principal{UserID: r.Sender.UserID, DeviceID: r.Sender.DeviceID}
	commit := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT, Payload: r.Commit, GroupId: r.GroupID, Epoch: r.Epoch}
	if err := s.fanOut(ctx, p, r.Commit, commit, r.To, r.At, false); err != nil {
		return err
	}
	if len(r.Welcomed) == 0 {
		return nil
	}
	// The Welcome notice carries no payload: the device fetches the one stored copy with
	// FetchWelcome.
	notice := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME, GroupId: r.GroupID, Epoch: r.Epoch + 1}
	return s.fanOut(ctx, p, r.Commit, notice, r.Welcomed, r.At, false)
}

// newFanOuts returns the outbox of commit fan-outs over the group store.
func (s *Server) newFanOuts(store kv.Store) (*outbox.Outbox, error) {
	return outbox.New(outbox.Config{Store: store, Prefix: fanOutPrefix, Handle: s.deliverFanOut, Now: s.now, Logger: s.log})
}
