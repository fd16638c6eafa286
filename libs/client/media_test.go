package client_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/crypto/filecrypt"
	"github.com/guardyn/guardyn/tools/clienttest"
)

func randomFile(t *testing.T, dir, name string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func fileEvent(t *testing.T, evs []client.Event) client.Event {
	t.Helper()
	for _, ev := range evs {
		if ev.Kind == client.EventFile {
			return ev
		}
	}
	t.Fatalf("no file event in %+v", evs)
	return client.Event{}
}

// TestSendFile: alice sends bob a file; bob and alice's other device see it, fetch it in
// ranges, check it and decrypt it; bob also reads ranges as a player seeking would.
func TestSendFile(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	alice2 := p.Link(t, alice, "alice-laptop")
	ctx := clienttest.Context(t)
	dir := t.TempDir()
	body := randomFile(t, dir, "holiday.mp4", 9<<20+12345) // more than one download range
	sent, err := alice.SendFile(ctx, "bob", filepath.Join(dir, "holiday.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	if sent.ResumedAt != 0 || sent.File.Name != "holiday.mp4" || sent.File.PlaintextSize() != int64(len(body)) {
		t.Fatalf("sent %+v", sent)
	}
	ev := fileEvent(t, clienttest.Drain(t, bob))
	if ev.From != "alice" || ev.ID != sent.ID || ev.File.Blob != sent.File.Blob {
		t.Fatalf("bob got %+v", ev)
	}
	entry, err := bob.FindFile(ev.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	path, err := bob.GetFile(ctx, entry, out)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); path != filepath.Join(out, "holiday.mp4") || !bytes.Equal(got, body) {
		t.Fatalf("bob saved %s, equal %v", path, bytes.Equal(got, body))
	}
	if _, err := bob.GetFile(ctx, entry, out); !errors.Is(err, client.ErrFileExists) {
		t.Fatalf("second GetFile: err = %v, want ErrFileExists", err)
	}
	// Seeking.
	ra, err := bob.OpenFile(ctx, entry)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 5<<20 + 17, int64(len(body)) - 1000} {
		p := make([]byte, 1000)
		if _, err := ra.ReadAt(p, off); err != nil && err != io.EOF || !bytes.Equal(p, body[off:off+1000]) {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
	// alice's other device has the copy and reads it as the owner.
	copyEv := fileEvent(t, clienttest.Drain(t, alice2))
	if !copyEv.Outgoing || copyEv.Peer != "bob" {
		t.Fatalf("alice2 got %+v", copyEv)
	}
	e2, err := alice2.FindFile(copyEv.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	if path, err := alice2.GetFile(ctx, e2, filepath.Join(t.TempDir(), "copy.mp4")); err != nil {
		t.Fatal(err)
	} else if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
		t.Fatal("alice2's copy differs")
	}
	if n, _ := alice.PendingUploadsForTest(); n != 0 {
		t.Fatalf("%d uploads left pending after the send", n)
	}
	if left, _ := os.ReadDir(filepath.Join(p.Profiles, "alice", "uploads")); len(left) != 0 {
		t.Fatalf("ciphertext left in the profile: %v", left)
	}
}

var errKilled = errors.New("killed")

// TestSendFileResumesKilledUpload: a send-file killed after some chunks were committed
// resumes from the server's committed offset on the next call.
func TestSendFileResumesKilledUpload(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	dir := t.TempDir()
	body := randomFile(t, dir, "big.bin", 6<<20)
	alice.KillUploadForTest(func(id string, sent int64) error {
		if sent < 3<<20 {
			return nil
		}
		// Die only once the server has committed what was sent, so the resume point is
		// known.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if n, err := alice.CommittedForTest(ctx, id); err == nil && n >= 3<<20 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return errKilled
	})
	if _, err := alice.SendFile(ctx, "bob", filepath.Join(dir, "big.bin")); !errors.Is(err, errKilled) {
		t.Fatalf("killed send: err = %v", err)
	}
	if evs := clienttest.Drain(t, bob); len(evs) != 0 {
		t.Fatalf("bob got %+v from a killed send", evs)
	}
	alice.KillUploadForTest(nil)
	sent, err := alice.SendFile(ctx, "bob", filepath.Join(dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if sent.ResumedAt != 3<<20 {
		t.Fatalf("resumed at %d, want %d", sent.ResumedAt, 3<<20)
	}
	ev := fileEvent(t, clienttest.Drain(t, bob))
	entry, _ := bob.FindFile(ev.ID.String())
	path, err := bob.GetFile(ctx, entry, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
		t.Fatal("resumed file differs")
	}
}

// TestGetFileDetectsTampering: a server that changes one byte of the stored ciphertext
// makes GetFile fail, leaving no file behind, and ranged reads of that chunk fail too.
func TestGetFileDetectsTampering(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	dir := t.TempDir()
	randomFile(t, dir, "doc.pdf", 300000)
	sent, err := alice.SendFile(ctx, "bob", filepath.Join(dir, "doc.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	blobPath := filepath.Join(p.DataDir, "blobs", "blobs", sent.File.Blob)
	b, err := os.ReadFile(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	b[100000] ^= 1
	if err := os.WriteFile(blobPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ev := fileEvent(t, clienttest.Drain(t, bob))
	entry, _ := bob.FindFile(ev.ID.String())
	out := t.TempDir()
	if _, err := bob.GetFile(ctx, entry, out); !errors.Is(err, filecrypt.ErrAuthentication) {
		t.Fatalf("GetFile of a changed blob: err = %v, want ErrAuthentication", err)
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Fatalf("a failed GetFile left %v", left)
	}
	ra, err := bob.OpenFile(ctx, entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ra.ReadAt(make([]byte, 10), 100000); !errors.Is(err, filecrypt.ErrAuthentication) {
		t.Fatalf("ranged read of the changed chunk: err = %v", err)
	}
}

// TestSendFileDropsOrphans: ciphertext a send killed while encrypting left in the profile
// is deleted by the next send.
func TestSendFileDropsOrphans(t *testing.T) {
	p := clienttest.Start(t)
	alice := p.Register(t, "alice")
	p.Register(t, "bob")
	orphan := filepath.Join(p.Profiles, "alice", "uploads", "0123456789abcdef.gyf")
	if err := os.MkdirAll(filepath.Dir(orphan), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, []byte("half a ciphertext"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	randomFile(t, dir, "a.txt", 10)
	if _, err := alice.SendFile(clienttest.Context(t), "bob", filepath.Join(dir, "a.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphaned ciphertext kept: %v", err)
	}
}
