package e2e_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/guardyn/guardyn/tools/client"
	"github.com/guardyn/guardyn/tools/client/clienttest"
)

// sendMarkedFile sends bob a file of marker lines, named after the marker, and checks
// that bob gets it back intact; TestNoPlaintextAtRest then scans the server for it.
func sendMarkedFile(t *testing.T, alice, bob *client.Client, marker string) {
	t.Helper()
	ctx := clienttest.Context(t)
	dir := t.TempDir()
	body := bytes.Repeat([]byte(marker+" inside a file\n"), 20000) // ~700 KiB, many chunks
	path := filepath.Join(dir, marker+".txt")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	sent, err := alice.SendFile(ctx, "bob", path)
	if err != nil {
		t.Fatal(err)
	}
	clienttest.Drain(t, bob)
	entry, err := bob.FindFile(sent.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	out, err := bob.GetFile(ctx, entry, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, body) {
		t.Fatal("bob's copy of the marked file differs")
	}
}
