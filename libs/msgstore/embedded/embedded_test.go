package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded"
	"github.com/guardyn/guardyn/libs/msgstore/msgstoretest"
)

func openWith(opts embedded.Options) msgstoretest.Opener {
	return func(tb testing.TB, dir string, clock func() time.Time) msgstore.Store {
		tb.Helper()
		o := opts
		o.Now = clock
		s, err := embedded.Open(dir, o)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) {
	msgstoretest.Run(t, openWith(embedded.Options{}))
}

func body(n int) []byte {
	b := make([]byte, 200)
	for i := range b {
		b[i] = byte(n + i)
	}
	return b
}

func message(in msgstore.Inbox, n int) msgstore.Message {
	var id msgstore.ID
	id[0], id[1], id[2] = byte(n>>16), byte(n>>8), byte(n)
	return msgstore.Message{Inbox: in, ID: id, Body: body(n), Timestamp: time.Unix(1_750_000_000, 0)}
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := embedded.Open(dir, embedded.Options{}); err == nil {
		s2.Close()
		t.Fatal("second Open of a locked dir succeeded")
	}
}

// TestReclaimInBackground checks that the periodic reclaim drops expired messages from
// Count without any call.
func TestReclaimInBackground(t *testing.T) {
	clock := msgstoretest.NewClock()
	s, err := embedded.Open(t.TempDir(), embedded.Options{Now: clock.Now, ReclaimInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := msgstore.Inbox{UserID: "u", DeviceID: "d"}
	m := message(in, 1)
	m.Expiry = clock.Now().Add(time.Minute)
	if err := s.Append(context.Background(), []msgstore.Message{m, message(in, 2)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.Count(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("count still %d after 5s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
