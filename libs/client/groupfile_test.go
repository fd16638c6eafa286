package client_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// groupFile waits for the file event of group "trip" on c and returns its history entry.
func groupFile(t *testing.T, who string, c *client.Client) *client.LogEntry {
	t.Helper()
	ev := fileEvent(t, clienttest.Drain(t, c))
	if ev.Group != "trip" || ev.From != "alice" {
		t.Fatalf("%s got %+v", who, ev)
	}
	e, err := c.FindFile(ev.ID.String())
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	return e
}

// fetch downloads e on c and checks it against body.
func fetch(t *testing.T, who string, c *client.Client, e *client.LogEntry, body []byte) {
	t.Helper()
	path, err := c.GetFile(clienttest.Context(t), e, t.TempDir())
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
		t.Fatalf("%s saved another file", who)
	}
}

// leaked is e as another account would hold it if a member passed it on.
func leaked(e *client.LogEntry) *client.LogEntry {
	l := *e
	l.Outgoing = false
	return &l
}

// TestSendFileToGroup (issue 12 item 5, groups): alice sends a file to a group of three
// (bob on two devices) over real gRPC: it is uploaded once and every member device gets
// one group message it can fetch, verify and decrypt with. dave, added later, cannot use
// a capability made before he joined, but fetches files sent after; carol, removed, gets
// no later file and cannot fetch it with another member's reference.
func TestSendFileToGroup(t *testing.T) {
	p := clienttest.Start(t)
	ctx := clienttest.Context(t)
	alice, bob, carol, dave := p.Register(t, "alice"), p.Register(t, "bob"), p.Register(t, "carol"), p.Register(t, "dave")
	bob2 := p.Link(t, bob, "bob-laptop")
	clienttest.Drain(t, bob)
	if err := alice.CreateGroup(ctx, "trip", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2, "carol": carol} {
		wantView(t, name, c, "joined trip")
	}
	dir := t.TempDir()
	body := randomFile(t, dir, "map.pdf", 1<<20+777) // two upload chunks
	sent, err := alice.SendFile(ctx, "trip", filepath.Join(dir, "map.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	if sent.File.Name != "map.pdf" || sent.File.PlaintextSize() != int64(len(body)) {
		t.Fatalf("sent %+v", sent)
	}
	bobs := groupFile(t, "bob", bob)
	if bobs.ID != sent.ID.String() || bobs.File.Blob != sent.File.Blob || len(bobs.File.Capability) == 0 {
		t.Fatalf("bob's entry %+v", bobs)
	}
	fetch(t, "bob", bob, bobs, body)
	fetch(t, "bob2", bob2, groupFile(t, "bob2", bob2), body)
	carols := groupFile(t, "carol", carol)
	fetch(t, "carol", carol, carols, body)
	if bytes.Equal(carols.File.Capability, bobs.File.Capability) {
		t.Fatal("bob and carol got the same capability: it should name each account")
	}
	// alice's own history has it, read as the owner.
	own, err := alice.FindFile(sent.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	fetch(t, "alice", alice, own, body)
	if n, _ := alice.PendingUploadsForTest(); n != 0 {
		t.Fatalf("%d uploads left pending after the send", n)
	}

	// dave joins later: the reference to the earlier file, passed on by bob, is no use.
	if err := alice.GroupAdd(ctx, "trip", "dave"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "dave", dave, "joined trip")
	if _, err := dave.GetFile(ctx, leaked(bobs), t.TempDir()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("dave's fetch of a file sent before he joined: %v, want PermissionDenied", err)
	}

	// carol is removed; the next file reaches bob and dave but not her, and a reference
	// passed on to her does not work.
	if err := alice.GroupRemove(ctx, "trip", "carol"); err != nil {
		t.Fatal(err)
	}
	wantView(t, "carol", carol, "changed trip", "removed trip")
	body2 := randomFile(t, dir, "tickets.pdf", 4096)
	if _, err := alice.SendFile(ctx, "trip", filepath.Join(dir, "tickets.pdf")); err != nil {
		t.Fatal(err)
	}
	daves := groupFile(t, "dave", dave)
	fetch(t, "dave", dave, daves, body2)
	bobs2 := groupFile(t, "bob", bob)
	fetch(t, "bob", bob, bobs2, body2)
	if evs := clienttest.Drain(t, carol); len(evs) != 0 {
		t.Fatalf("carol, removed, got %+v", evs)
	}
	if _, err := carol.GetFile(ctx, leaked(bobs2), t.TempDir()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("removed carol's fetch of a later file: %v, want PermissionDenied", err)
	}
}
