package auth

import (
	"crypto/ed25519"
	"log/slog"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/kv/embedded"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// FuzzDirectoryRequest feeds the directory responder arbitrary request bytes (anything on
// the bus may send them): it never panics, refuses what is malformed with the stable reason
// before reading the store, and answers a valid batch with one list per user, in order.
func FuzzDirectoryRequest(f *testing.F) {
	seed := func(m *eventsv1.DeviceListRequest) []byte { b, _ := proto.Marshal(m); return b }
	f.Add([]byte{})
	f.Add(seed(&eventsv1.DeviceListRequest{UserId: "u1"}))
	f.Add(seed(&eventsv1.DeviceListRequest{UserIds: []string{"u1", "u2", "u1"}}))
	f.Add(seed(&eventsv1.DeviceListRequest{UserId: "u1", UserIds: []string{"u2"}}))
	f.Add(seed(&eventsv1.DeviceListRequest{UserIds: []string{""}}))

	store, err := embedded.Open(filepath.Join(f.TempDir(), embedded.FileName), embedded.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	_, tokenKey, _ := ed25519.GenerateKey(nil)
	_, certKey, _ := ed25519.GenerateKey(nil)
	s, err := New(Config{Store: store, TokenKey: tokenKey, CertificateKey: certKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		resp := s.directoryReply(data)
		var req eventsv1.DeviceListRequest
		valid := proto.Unmarshal(data, &req) == nil && validDirectoryRequest(&req)
		switch {
		case !valid:
			if resp.GetError() != reasonDirectoryMalformed || len(resp.GetLists()) != 0 || resp.GetFound() {
				t.Fatalf("malformed request answered %v", resp)
			}
		case resp.GetError() != "":
			t.Fatalf("valid request refused: %q", resp.GetError())
		case req.GetUserId() == "" && len(resp.GetLists()) != len(req.GetUserIds()):
			t.Fatalf("%d users answered with %d lists", len(req.GetUserIds()), len(resp.GetLists()))
		case len(req.GetUserIds()) > MaxDirectoryBatch || len(req.GetUserId()) > 64:
			t.Fatalf("a request beyond the bounds was answered: %v", resp)
		}
	})
}
