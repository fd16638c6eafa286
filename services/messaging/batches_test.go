package messaging

import (
	"testing"

	"github.com/guardyn/guardyn/libs/msgstore"
)

func TestAppendBatchesStayWithinTheStoreLimits(t *testing.T) {
	body := make([]byte, 100<<10)
	msgs := make([]msgstore.Message, 1000) // 100 MB in all, over MaxBatchBytes
	for i := range msgs {
		msgs[i].Body = body
	}
	batches := appendBatches(msgs)
	total := 0
	for _, b := range batches {
		size := 0
		for _, m := range b {
			size += len(m.Body)
		}
		if len(b) == 0 || len(b) > msgstore.MaxBatch || size > msgstore.MaxBatchBytes {
			t.Fatalf("batch of %d messages and %d bytes breaks the store's limits", len(b), size)
		}
		total += len(b)
	}
	if total != len(msgs) || len(batches) < 2 {
		t.Fatalf("%d batches carry %d of %d messages", len(batches), total, len(msgs))
	}

	small := make([]msgstore.Message, msgstore.MaxBatch+1)
	if b := appendBatches(small); len(b) != 2 || len(b[0]) != msgstore.MaxBatch {
		t.Fatalf("count limit: %d batches", len(b))
	}
	if b := appendBatches(nil); len(b) != 0 {
		t.Fatalf("no messages gave %d batches", len(b))
	}
}
