package platform

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestReadyzCoversEveryStore: /readyz of the all-in-one server fails, naming the store,
// once the message store or the kv store stops accepting writes. Before, it asked only
// NATS, so a server whose every send failed still reported ready.
func TestReadyzCoversEveryStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + p.AdminAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// Serving starts just after Run begins.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := readyz()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of a healthy platform = %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.blobs.Close()
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "blobstore:") {
		t.Fatalf("/readyz with the blob store closed = %d %q; want 503 naming it", code, body)
	}
	p.inboxes.Close()
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "msgstore:") {
		t.Fatalf("/readyz with the message store refusing writes = %d %q; want 503 naming it", code, body)
	}
	p.kv.Close()
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "kv:") || !strings.Contains(body, "msgstore:") {
		t.Fatalf("/readyz with both stores down = %d %q; want 503 naming both", code, body)
	}
}
