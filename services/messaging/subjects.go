package messaging

import (
	"strconv"
	"strings"

	"github.com/guardyn/guardyn/libs/bus"
)

// deliverPrefix starts the wake-up subject of one device (bus.DeliverSubject).
const deliverPrefix = bus.SubjectDeliverPrefix + "."

// parseDeliverSubject recovers the device a wake-up subject names. User ids are
// server-assigned hex strings, which bus.EscapeToken leaves unchanged.
func parseDeliverSubject(subject string) (inboxKey, bool) {
	rest, ok := strings.CutPrefix(subject, deliverPrefix)
	if !ok {
		return inboxKey{}, false
	}
	user, dev, ok := strings.Cut(rest, ".")
	if !ok || user == "" {
		return inboxKey{}, false
	}
	id, err := strconv.ParseUint(dev, 10, 32)
	if err != nil || id == 0 {
		return inboxKey{}, false
	}
	return inboxKey{user, uint32(id)}, true
}
