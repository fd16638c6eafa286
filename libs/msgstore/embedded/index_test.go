package embedded

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// TestFingerprintCollision gives a stored message the fingerprint of another id and
// checks that the index confirms ids against the log: the other id is still stored,
// found, and deleted alone. It does so in a small inbox, searched by a pass over its
// entries, and in a big one, searched through its fingerprint map.
func TestFingerprintCollision(t *testing.T) {
	for _, size := range []int{3, bigInbox + 44} {
		t.Run(fmt.Sprint("messages=", size), func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(t.TempDir(), Options{SegmentSize: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			in := msgstore.Inbox{UserID: "alice", DeviceID: "phone"}
			msg := func(n int) msgstore.Message {
				var id msgstore.ID
				id[0], id[1] = byte(n>>8), byte(n)
				return msgstore.Message{Inbox: in, ID: id, Kind: 1, Body: []byte{byte(n)}, Timestamp: time.Unix(1_750_000_000, 0)}
			}
			var msgs []msgstore.Message
			for n := range size {
				msgs = append(msgs, msg(n))
			}
			if err := s.Append(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			// Message 1 takes the fingerprint of the id about to be appended.
			other := msg(size)
			s.mu.Lock()
			ib := s.inboxes[in]
			ib.entries[1].fp = s.fingerprint(other.ID)
			if ib.fps != nil {
				ib.fps = nil
				ib.indexFP(0)
			}
			s.mu.Unlock()

			if err := s.Append(ctx, []msgstore.Message{other}); err != nil {
				t.Fatal(err)
			}
			if c, err := s.Count(ctx, in); err != nil || c != size+1 {
				t.Fatalf("Count = %d, %v after appending a colliding id; want %d", c, err, size+1)
			}
			got, err := s.Get(ctx, in, other.ID)
			if err != nil || got.ID != other.ID {
				t.Fatalf("Get(colliding id) = %x, %v; want %x", got.ID, err, other.ID)
			}
			// Appending it again is a no-op although two entries share its fingerprint.
			if err := s.Append(ctx, []msgstore.Message{other}); err != nil {
				t.Fatal(err)
			}
			if c, err := s.Count(ctx, in); err != nil || c != size+1 {
				t.Fatalf("Count = %d, %v after re-appending; want %d", c, err, size+1)
			}
			if err := s.Delete(ctx, in, []msgstore.ID{other.ID}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, in, other.ID); !errors.Is(err, msgstore.ErrNotFound) {
				t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
			}
			if c, err := s.Count(ctx, in); err != nil || c != size {
				t.Fatalf("Count = %d, %v after deleting the colliding id; want %d", c, err, size)
			}
			ids, _, err := s.ReadIDs(ctx, in, nil, msgstore.MaxBatch)
			if err != nil || len(ids) < 2 || ids[1] != msgs[1].ID {
				t.Fatalf("ReadIDs = %d ids, %v; want message 1 still stored", len(ids), err)
			}
		})
	}
}

// TestSegmentSizeBound checks that Open refuses a segment size whose offsets would not
// fit the index.
func TestSegmentSizeBound(t *testing.T) {
	if s, err := Open(t.TempDir(), Options{SegmentSize: maxSegmentSize + 1}); err == nil {
		s.Close()
		t.Fatal("Open accepted a segment size beyond the index's offsets")
	}
}

// TestExpiryWithinTheSecond checks that a message is gone at its exact expiry although
// the index rounds expiry up to whole seconds: Read, ReadIDs and Get check the record.
func TestExpiryWithinTheSecond(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_750_000_000, 0)
	s, err := Open(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := msgstore.Inbox{UserID: "alice", DeviceID: "phone"}
	soon := msgstore.Message{Inbox: in, ID: msgstore.ID{1}, Timestamp: now, Expiry: now.Add(300 * time.Millisecond)}
	later := msgstore.Message{Inbox: in, ID: msgstore.ID{2}, Timestamp: now, Expiry: now.Add(2 * time.Second)}
	if err := s.Append(ctx, []msgstore.Message{soon, later}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(500 * time.Millisecond)
	msgs, err := s.Read(ctx, in, nil, 10, msgstore.MaxReadBytes)
	if err != nil || len(msgs) != 1 || msgs[0].ID != later.ID {
		t.Fatalf("Read = %d messages, %v; want only the one not expired", len(msgs), err)
	}
	ids, _, err := s.ReadIDs(ctx, in, nil, 10)
	if err != nil || len(ids) != 1 || ids[0] != later.ID {
		t.Fatalf("ReadIDs = %x, %v; want only the one not expired", ids, err)
	}
	if _, err := s.Get(ctx, in, soon.ID); !errors.Is(err, msgstore.ErrNotFound) {
		t.Fatalf("Get(expired) = %v, want ErrNotFound", err)
	}
	// A page of nothing but messages expired within the second reads on.
	msgs, err = s.Read(ctx, in, nil, 1, msgstore.MaxReadBytes)
	if err != nil || len(msgs) != 1 || msgs[0].ID != later.ID {
		t.Fatalf("Read(limit 1) = %d messages, %v; want the one not expired", len(msgs), err)
	}
}
