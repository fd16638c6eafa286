package main

import (
	"context"
	"crypto/sha256"
	"io"
	"regexp"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// TestMediaAsSeparateProcess runs the media service's own binary beside the auth binary:
// it verifies auth's tokens, stores a blob that another account reads with a capability,
// and refuses a device once auth removes it.
func TestMediaAsSeparateProcess(t *testing.T) {
	authOut := startBinary(t, "./services/auth/cmd/auth", regexp.MustCompile(`^auth: gRPC on (\S+), admin on \S+, NATS (\S+)$`),
		"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-nats-listen", "127.0.0.1:0")
	authAddr, natsURL := authOut[1], authOut[2]
	mediaOut := startBinary(t, "./services/media/cmd/media", regexp.MustCompile(`^media: gRPC on (\S+),`),
		"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-nats-url", natsURL, "-auth-addr", authAddr)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	authc := authv1.NewAuthServiceClient(dial(authAddr))
	md := mediav1.NewMediaServiceClient(dial(mediaOut[1]))
	alice, err := rawdevice.Register(ctx, authc, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := rawdevice.Register(ctx, authc, "bob")
	if err != nil {
		t.Fatal(err)
	}
	alice2, err := rawdevice.Link(ctx, authc, alice, "laptop")
	if err != nil {
		t.Fatal(err)
	}

	body := []byte("ciphertext of a photo")
	up, err := md.CreateUpload(alice2.Context(ctx), &mediav1.CreateUploadRequest{TotalSize: uint64(len(body)), ChunkSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s, err := md.UploadChunks(alice2.Context(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&mediav1.UploadChunksRequest{UploadId: up.GetUploadId(), Data: body}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	done, err := md.CompleteUpload(alice2.Context(ctx), &mediav1.CompleteUploadRequest{UploadId: up.GetUploadId(), Sha256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	capResp, err := md.CreateCapability(alice.Context(ctx), &mediav1.CreateCapabilityRequest{BlobId: done.GetBlobId(), Ttl: durationpb.New(time.Hour), AudienceUserId: bob.UserID})
	if err != nil {
		t.Fatal(err)
	}
	read := func(d *rawdevice.Device, capability []byte) ([]byte, error) {
		st, err := md.Download(d.Context(ctx), &mediav1.DownloadRequest{BlobId: done.GetBlobId(), Capability: capability})
		if err != nil {
			return nil, err
		}
		var out []byte
		for {
			resp, err := st.Recv()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			out = append(out, resp.GetData()...)
		}
	}
	if got, err := read(bob, capResp.GetCapability()); err != nil || string(got) != string(body) {
		t.Fatalf("bob with the capability: %q, %v", got, err)
	}
	// Removing alice's laptop at auth revokes its token at media.
	if _, err := authc.RemoveDevice(alice.Context(ctx), &authv1.RemoveDeviceRequest{DeviceId: alice2.ID}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := read(alice2, nil)
		if status.Code(err) == codes.Unauthenticated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("removed device still reads at media: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := read(alice, nil); err != nil || string(got) != string(body) {
		t.Fatalf("alice's phone as the owner: %q, %v", got, err)
	}
}
