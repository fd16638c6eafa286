package msgstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/libs/msgstore"
)

func TestChecks(t *testing.T) {
	good := msgstore.Message{Inbox: msgstore.Inbox{UserID: "u", DeviceID: "d"}, Body: make([]byte, msgstore.MaxBodySize)}
	if err := msgstore.CheckMessages([]msgstore.Message{good}); err != nil {
		t.Errorf("valid message rejected: %v", err)
	}
	big := make([]msgstore.Message, msgstore.MaxBatchBytes/msgstore.MaxBodySize+1)
	for i := range big {
		big[i] = good
	}
	bad := map[string]error{
		"long user":   msgstore.Inbox{UserID: strings.Repeat("u", 256), DeviceID: "d"}.Validate(),
		"no device":   msgstore.Inbox{UserID: "u"}.Validate(),
		"batch bytes": msgstore.CheckMessages(big),
		"batch size":  msgstore.CheckMessages(make([]msgstore.Message, msgstore.MaxBatch+1)),
		"ids":         msgstore.CheckIDs(make([]msgstore.ID, msgstore.MaxBatch+1)),
		"limit":       msgstore.CheckLimit(0),
		"no budget":   msgstore.CheckReadBytes(0),
		"big budget":  msgstore.CheckReadBytes(msgstore.MaxReadBytes + 1),
	}
	for name, err := range bad {
		if !errors.Is(err, msgstore.ErrInvalid) {
			t.Errorf("%s: %v, want msgstore.ErrInvalid", name, err)
		}
	}
	if err := msgstore.CheckReadBytes(msgstore.MaxReadBytes); err != nil {
		t.Errorf("CheckReadBytes(MaxReadBytes) = %v", err)
	}
	if err := msgstore.CheckLimit(msgstore.MaxBatch); err != nil {
		t.Errorf("CheckLimit(MaxBatch) = %v", err)
	}
}
