package messaging_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/kv"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// TestWelcomesAreDeletedWhenFetchedOrExpired (issue 18): a Welcome (up to 1 MiB) used to
// stay in the kv store forever. It is deleted, with every reference to it, an hour after
// the last device it adds fetched it (a device may fetch it again until then), or with its
// notices after the message TTL when some device never fetches it.
func TestWelcomesAreDeletedWhenFetchedOrExpired(t *testing.T) {
	users := []string{"a", "b", "c", "d"}
	for i, u := range users {
		users[i] = fmt.Sprintf("%032x", u)
	}
	node := startGroupNode(t, users)
	gid := []byte("welcomes")
	ctx := context.Background()
	if _, err := node.svc.CreateGroup(as(users[0]), &messagingv1.CreateGroupRequest{GroupId: gid, Members: []*commonv1.DeviceAddress{addr(users[0], 1)}, GroupInfo: []byte("gi")}); err != nil {
		t.Fatal(err)
	}
	stored := func() (bodies, refs int) {
		t.Helper()
		err := node.kv.View(ctx, func(tx kv.Tx) error {
			b, err := kv.ScanPrefix(tx, []byte("msg/welcome-body/"), 100)
			if err != nil {
				return err
			}
			r, err := kv.ScanPrefix(tx, []byte("msg/welcome/"), 100)
			bodies, refs = len(b), len(r)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return bodies, refs
	}
	fetch := func(u string) ([]byte, error) {
		t.Helper()
		r, err := node.svc.FetchWelcome(as(u), &messagingv1.FetchWelcomeRequest{GroupId: gid})
		return r.GetWelcome(), err
	}
	sweep := func(want int) {
		t.Helper()
		if n, err := node.svc.SweepWelcomesForTest(ctx); err != nil || n != want {
			t.Fatalf("sweep deleted %d Welcomes (%v), want %d", n, err, want)
		}
	}
	notFound := func(u string) {
		t.Helper()
		if _, err := fetch(u); status.Code(err) != codes.NotFound {
			t.Fatalf("fetch after the Welcome's deletion: %v, want NotFound", err)
		}
	}

	// Epoch 0 → 1 adds b and c with one Welcome.
	welcome := mlsframe.PaddedWelcome(4096, mlsframe.Ref(1), mlsframe.Ref(2))
	if _, err := node.svc.SubmitCommit(as(users[0]), &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 0, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("g1"),
		Welcome: welcome, Added: []*commonv1.DeviceAddress{addr(users[1], 1), addr(users[2], 1)}, WelcomeRecipients: []*commonv1.DeviceAddress{addr(users[1], 1), addr(users[2], 1)}}); err != nil {
		t.Fatal(err)
	}
	if w, err := fetch(users[1]); err != nil || !bytes.Equal(w, welcome) {
		t.Fatalf("b's fetch: %d bytes, %v", len(w), err)
	}
	node.clock.Add(2 * time.Hour)
	sweep(0) // c has not fetched it yet
	if w, err := fetch(users[2]); err != nil || !bytes.Equal(w, welcome) {
		t.Fatalf("c's fetch: %d bytes, %v", len(w), err)
	}
	node.clock.Add(30 * time.Minute)
	sweep(0)
	if w, err := fetch(users[2]); err != nil || !bytes.Equal(w, welcome) {
		t.Fatalf("c's second fetch within the grace: %d bytes, %v", len(w), err)
	}
	if bodies, refs := stored(); bodies != 1 || refs != 2 {
		t.Fatalf("before the grace ends: %d Welcomes and %d references stored, want 1 and 2", bodies, refs)
	}
	node.clock.Add(31 * time.Minute)
	sweep(1)
	if bodies, refs := stored(); bodies != 0 || refs != 0 {
		t.Fatalf("after every device fetched it: %d Welcomes and %d references stored, want none", bodies, refs)
	}
	notFound(users[1])

	// Epoch 1 → 2 adds d, which never fetches its Welcome: it expires with its notice.
	if _, err := node.svc.SubmitCommit(as(users[0]), &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 1, Commit: mlsframe.PrivateMessage(gid, 1, mlsframe.Commit, 0), GroupInfo: []byte("g2"),
		Welcome: mlsframe.Welcome(mlsframe.Ref(3)), Added: []*commonv1.DeviceAddress{addr(users[3], 1)}, WelcomeRecipients: []*commonv1.DeviceAddress{addr(users[3], 1)}}); err != nil {
		t.Fatal(err)
	}
	node.clock.Add(messaging.DefaultMessageTTL - time.Minute)
	sweep(0)
	node.clock.Add(2 * time.Minute)
	sweep(1)
	if bodies, refs := stored(); bodies != 0 || refs != 0 {
		t.Fatalf("after the TTL: %d Welcomes and %d references stored, want none", bodies, refs)
	}
	notFound(users[3])
}
