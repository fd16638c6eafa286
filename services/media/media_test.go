package media_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	blobembedded "github.com/guardyn/guardyn/libs/blobstore/embedded"
	"github.com/guardyn/guardyn/libs/kv"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	"github.com/guardyn/guardyn/services/media"
)

func TestUploadDownload(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.as(t, "alice")
	body := data(3<<20+123, 1)
	blob := e.upload(t, alice, body)
	sum := sha256.Sum256(body)
	if blob != bytesHex(sum[:]) {
		t.Fatalf("blob id %s is not the ciphertext hash", blob)
	}
	got, err := e.download(alice, blob, 0, 0, nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("download: %v (equal %v)", err, bytes.Equal(got, body))
	}
	// Ranges, as a player seeking.
	for _, r := range [][2]uint64{{0, 1}, {1<<20 - 5, 10}, {2 << 20, 1 << 20}, {uint64(len(body)) - 7, 100}} {
		got, err := e.download(alice, blob, r[0], r[1], nil)
		end := min(r[0]+r[1], uint64(len(body)))
		if err != nil || !bytes.Equal(got, body[r[0]:end]) {
			t.Fatalf("range %v: %v", r, err)
		}
	}
	_, err = e.download(alice, blob, uint64(len(body)), 0, nil)
	wantErr(t, err, codes.OutOfRange, "RANGE_INVALID")
}

func bytesHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestResume breaks an upload stream midway and resumes from the committed offset.
func TestResume(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.as(t, "alice")
	body := data(5<<20, 2)
	const chunk = 256 << 10
	id := e.create(t, alice, len(body), chunk)
	ctx, cancel := context.WithCancel(alice)
	s, err := e.client.UploadChunks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < 2<<20; off += chunk {
		if err := s.Send(&mediav1.UploadChunksRequest{UploadId: id, Offset: uint64(off), Data: body[off : off+chunk]}); err != nil {
			t.Fatal(err)
		}
	}
	cancel() // the client dies
	var committed uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := e.client.GetUploadStatus(alice, &mediav1.GetUploadStatusRequest{UploadId: id})
		if err != nil {
			t.Fatal(err)
		}
		committed = st.GetCommittedOffset()
		if st.GetTotalSize() != uint64(len(body)) || committed%chunk != 0 || committed > 2<<20 {
			t.Fatalf("status %v", st)
		}
		// Chunks in flight may still land; wait until the offset is stable.
		time.Sleep(50 * time.Millisecond)
		again, _ := e.client.GetUploadStatus(alice, &mediav1.GetUploadStatusRequest{UploadId: id})
		if again.GetCommittedOffset() == committed || time.Now().After(deadline) {
			break
		}
	}
	if n, err := e.send(alice, id, body, int(committed), chunk); err != nil || n != uint64(len(body)) {
		t.Fatalf("resumed upload = %d, %v", n, err)
	}
	sum := sha256.Sum256(body)
	resp, err := e.client.CompleteUpload(alice, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.client.CompleteUpload(alice, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: sum[:]})
	if err != nil || again.GetBlobId() != resp.GetBlobId() {
		t.Fatalf("repeated CompleteUpload = %v, %v", again, err)
	}
	if got, err := e.download(alice, resp.GetBlobId(), 0, 0, nil); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("download after resume: %v", err)
	}
}

// TestBadUploads sends every kind of bad upload input: each gets its stable reason and
// changes nothing stored.
func TestBadUploads(t *testing.T) {
	e := newEnv(t, nil)
	alice, mallory := e.as(t, "alice"), e.as(t, "mallory")
	body := data(3000, 3)
	sum := sha256.Sum256(body)
	id := e.create(t, alice, len(body), 1000)
	if n, err := e.send(alice, id, body[:2000], 0, 1000); err != nil || n != 2000 {
		t.Fatalf("first chunks: %d, %v", n, err)
	}
	chunk := func(ctx context.Context, id string, off int, b []byte) error {
		s, err := e.client.UploadChunks(ctx)
		if err != nil {
			return err
		}
		s.Send(&mediav1.UploadChunksRequest{UploadId: id, Offset: uint64(off), Data: b})
		_, err = s.CloseAndRecv()
		return err
	}
	cases := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
	}{
		{"oversized chunk", func() error { return chunk(alice, id, 2000, make([]byte, 1001)) }, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"empty chunk", func() error { return chunk(alice, id, 2000, nil) }, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"offset gap", func() error { return chunk(alice, id, 2500, body[2500:]) }, codes.FailedPrecondition, "OFFSET_MISMATCH"},
		{"offset overlap", func() error { return chunk(alice, id, 1500, body[1500:2500]) }, codes.FailedPrecondition, "OFFSET_MISMATCH"},
		{"someone else's upload id", func() error { return chunk(mallory, id, 2000, body[2000:]) }, codes.NotFound, "UPLOAD_NOT_FOUND"},
		{"someone else's upload status", func() error {
			_, err := e.client.GetUploadStatus(mallory, &mediav1.GetUploadStatusRequest{UploadId: id})
			return err
		}, codes.NotFound, "UPLOAD_NOT_FOUND"},
		{"someone else's completion", func() error {
			_, err := e.client.CompleteUpload(mallory, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: sum[:]})
			return err
		}, codes.NotFound, "UPLOAD_NOT_FOUND"},
		{"unknown upload id", func() error { return chunk(alice, "nope", 0, body) }, codes.NotFound, "UPLOAD_NOT_FOUND"},
		{"path in upload id", func() error { return chunk(alice, "../../kv", 0, body) }, codes.NotFound, "UPLOAD_NOT_FOUND"},
		{"incomplete", func() error {
			_, err := e.client.CompleteUpload(alice, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: sum[:]})
			return err
		}, codes.FailedPrecondition, "UPLOAD_INCOMPLETE"},
		{"hash of the wrong length", func() error {
			_, err := e.client.CompleteUpload(alice, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: sum[:31]})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"zero size", func() error {
			_, err := e.client.CreateUpload(alice, &mediav1.CreateUploadRequest{TotalSize: 0, ChunkSize: 1000})
			return err
		}, codes.InvalidArgument, "UPLOAD_TOO_LARGE"},
		{"above the maximum blob size", func() error {
			_, err := e.client.CreateUpload(alice, &mediav1.CreateUploadRequest{TotalSize: media.DefaultMaxBlobSize + 1, ChunkSize: 1000})
			return err
		}, codes.InvalidArgument, "UPLOAD_TOO_LARGE"},
		{"chunk size above 1 MiB", func() error {
			_, err := e.client.CreateUpload(alice, &mediav1.CreateUploadRequest{TotalSize: 10, ChunkSize: 1<<20 + 1})
			return err
		}, codes.InvalidArgument, "MALFORMED_REQUEST"},
	}
	for _, c := range cases {
		e.unchanged(t, c.name, func() { wantErr(t, c.call(), c.code, c.reason) })
	}
	// Past the declared size, on an upload of 10 bytes with 1000-byte chunks.
	small := e.create(t, alice, 10, 1000)
	e.unchanged(t, "past the declared size", func() {
		wantErr(t, chunk(alice, small, 0, make([]byte, 11)), codes.InvalidArgument, "UPLOAD_TOO_LARGE")
	})

	// The last chunk, then a wrong hash: refused, nothing changes, the right one works.
	if n, err := e.send(alice, id, body, 2000, 1000); err != nil || n != 3000 {
		t.Fatalf("last chunk: %d, %v", n, err)
	}
	wrong := sum
	wrong[0] ^= 1
	e.unchanged(t, "wrong final hash", func() {
		_, err := e.client.CompleteUpload(alice, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: wrong[:]})
		wantErr(t, err, codes.InvalidArgument, "HASH_MISMATCH")
	})
	resp, err := e.client.CompleteUpload(alice, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	e.unchanged(t, "chunk after completion", func() {
		wantErr(t, chunk(alice, id, 3000, []byte("more")), codes.FailedPrecondition, "UPLOAD_COMPLETED")
	})
	e.unchanged(t, "completion with another hash after completion", func() {
		_, err := e.client.CompleteUpload(alice, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: wrong[:]})
		wantErr(t, err, codes.InvalidArgument, "HASH_MISMATCH")
	})
	if got, err := e.download(alice, resp.GetBlobId(), 0, 0, nil); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("download: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob, mallory := e.as(t, "alice"), e.as(t, "bob"), e.as(t, "mallory")
	body := data(100000, 4)
	blob := e.upload(t, alice, body)
	other := e.upload(t, alice, data(10, 5))
	capFor := func(blob, audience string, ttl time.Duration) []byte {
		t.Helper()
		resp, err := e.client.CreateCapability(alice, &mediav1.CreateCapabilityRequest{BlobId: blob, Ttl: durationpb.New(ttl), AudienceUserId: audience})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetCapability()
	}
	read := func(ctx context.Context, blob string, c []byte) error {
		got, err := e.download(ctx, blob, 0, 0, c)
		if err == nil && !bytes.Equal(got, body) {
			t.Fatal("capability download returned other bytes")
		}
		return err
	}
	anyone := capFor(blob, "", time.Hour)
	forBob := capFor(blob, "bob", time.Hour)

	wantErr(t, read(bob, blob, nil), codes.NotFound, "BLOB_NOT_FOUND")
	if err := read(bob, blob, anyone); err != nil {
		t.Fatalf("bob with a capability: %v", err)
	}
	if err := read(bob, blob, forBob); err != nil {
		t.Fatalf("bob with his capability: %v", err)
	}
	forged := bytes.Clone(anyone)
	forged[20] ^= 1
	wantErr(t, read(bob, blob, forged), codes.PermissionDenied, "CAPABILITY_INVALID")
	wantErr(t, read(bob, blob, anyone[:len(anyone)-1]), codes.PermissionDenied, "CAPABILITY_INVALID")
	wantErr(t, read(bob, other, anyone), codes.PermissionDenied, "CAPABILITY_INVALID")
	wantErr(t, read(mallory, blob, forBob), codes.PermissionDenied, "CAPABILITY_INVALID")
	_, err := e.client.CreateCapability(mallory, &mediav1.CreateCapabilityRequest{BlobId: blob, Ttl: durationpb.New(time.Hour)})
	wantErr(t, err, codes.NotFound, "BLOB_NOT_FOUND")
	for _, ttl := range []*durationpb.Duration{nil, durationpb.New(0), durationpb.New(-time.Second), durationpb.New(media.MaxCapabilityTTL + time.Second)} {
		e.unchanged(t, "bad ttl", func() {
			_, err := e.client.CreateCapability(alice, &mediav1.CreateCapabilityRequest{BlobId: blob, Ttl: ttl})
			wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
		})
	}

	// Revocation: only by its creator, and it holds.
	e.unchanged(t, "revocation by another user", func() {
		_, err := e.client.RevokeCapability(mallory, &mediav1.RevokeCapabilityRequest{Capability: anyone})
		wantErr(t, err, codes.PermissionDenied, "CAPABILITY_INVALID")
	})
	e.unchanged(t, "revocation of a forged capability", func() {
		_, err := e.client.RevokeCapability(alice, &mediav1.RevokeCapabilityRequest{Capability: forged})
		wantErr(t, err, codes.PermissionDenied, "CAPABILITY_INVALID")
	})
	if _, err := e.client.RevokeCapability(alice, &mediav1.RevokeCapabilityRequest{Capability: anyone}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, read(bob, blob, anyone), codes.PermissionDenied, "CAPABILITY_REVOKED")
	if err := read(bob, blob, forBob); err != nil {
		t.Fatalf("revoking one capability broke another: %v", err)
	}

	// Expiry.
	short := capFor(blob, "", time.Minute)
	e.clock.Advance(2 * time.Minute)
	wantErr(t, read(bob, blob, short), codes.PermissionDenied, "CAPABILITY_EXPIRED")

	// Deleting the blob revokes every capability for it, also after a re-upload.
	if _, err := e.client.DeleteBlob(alice, &mediav1.DeleteBlobRequest{BlobId: blob}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, read(bob, blob, forBob), codes.PermissionDenied, "CAPABILITY_REVOKED")
	if again := e.upload(t, alice, body); again != blob {
		t.Fatal("re-upload has another id")
	}
	wantErr(t, read(bob, blob, forBob), codes.PermissionDenied, "CAPABILITY_REVOKED")
}

func TestDeleteBlob(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.as(t, "alice"), e.as(t, "bob")
	body := data(50000, 6)
	blob := e.upload(t, alice, body)
	e.upload(t, bob, body) // the same ciphertext, owned twice
	path := filepath.Join(e.dir, blobembedded.DirName, "blobs", blob)
	e.unchanged(t, "delete by a non-owner", func() {
		_, err := e.client.DeleteBlob(e.as(t, "mallory"), &mediav1.DeleteBlobRequest{BlobId: blob})
		wantErr(t, err, codes.NotFound, "BLOB_NOT_FOUND")
	})
	if _, err := e.client.DeleteBlob(alice, &mediav1.DeleteBlobRequest{BlobId: blob}); err != nil {
		t.Fatal(err)
	}
	_, err := e.download(alice, blob, 0, 0, nil)
	wantErr(t, err, codes.NotFound, "BLOB_NOT_FOUND")
	if got, err := e.download(bob, blob, 0, 0, nil); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("the other owner lost the blob: %v", err)
	}
	if _, err := e.client.DeleteBlob(bob, &mediav1.DeleteBlobRequest{BlobId: blob}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the last owner's deletion left the bytes: %v", err)
	}
	_, err = e.client.DeleteBlob(bob, &mediav1.DeleteBlobRequest{BlobId: blob})
	wantErr(t, err, codes.NotFound, "BLOB_NOT_FOUND")
}

func TestQuotas(t *testing.T) {
	e := newEnv(t, func(c *media.Config) {
		c.MaxBlobSize, c.StorageQuota, c.DailyQuota, c.MaxOpenUploads = 1000, 2500, 3000, 2
	})
	alice := e.as(t, "alice")
	create := func(size int) error {
		_, err := e.client.CreateUpload(alice, &mediav1.CreateUploadRequest{TotalSize: uint64(size), ChunkSize: 1000})
		return err
	}
	e.unchanged(t, "over the maximum blob size", func() { wantErr(t, create(1001), codes.InvalidArgument, "UPLOAD_TOO_LARGE") })
	a := e.upload(t, alice, data(1000, 1))
	e.upload(t, alice, data(1000, 2))
	e.unchanged(t, "over the storage quota", func() { wantErr(t, create(501), codes.ResourceExhausted, "QUOTA_EXCEEDED") })
	if _, err := e.client.DeleteBlob(alice, &mediav1.DeleteBlobRequest{BlobId: a}); err != nil {
		t.Fatal(err)
	}
	// Deleting gave the storage back; 3000 bytes declared today leave 1000.
	e.upload(t, alice, data(1000, 3))
	e.unchanged(t, "over the daily quota", func() { wantErr(t, create(1), codes.ResourceExhausted, "QUOTA_EXCEEDED") })
	e.clock.Advance(24 * time.Hour)
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A new day; the storage quota still holds 2000 bytes.
	if err := create(400); err != nil {
		t.Fatalf("next day: %v", err)
	}
	if err := create(10); err != nil {
		t.Fatal(err)
	}
	e.unchanged(t, "too many open uploads", func() { wantErr(t, create(10), codes.ResourceExhausted, "QUOTA_EXCEEDED") })
}

// TestExpiry: an unfinished upload is dropped with its reservation when it expires; a
// blob lives for its lease, which a capability extends; then its bytes are deleted.
func TestExpiry(t *testing.T) {
	e := newEnv(t, func(c *media.Config) {
		c.StorageQuota, c.UploadTTL, c.BlobLease = 3000, time.Hour, 48*time.Hour
	})
	alice, bob := e.as(t, "alice"), e.as(t, "bob")
	id := e.create(t, alice, 2000, 1000)
	if _, err := e.send(alice, id, data(2000, 1)[:1000], 0, 1000); err != nil {
		t.Fatal(err)
	}
	blob := e.upload(t, alice, data(1000, 2))
	dir := filepath.Join(e.dir, blobembedded.DirName)
	e.clock.Advance(2 * time.Hour)
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "uploads", id)); !os.IsNotExist(err) {
		t.Fatalf("expired upload still on disk: %v", err)
	}
	_, err := e.client.GetUploadStatus(alice, &mediav1.GetUploadStatusRequest{UploadId: id})
	wantErr(t, err, codes.NotFound, "UPLOAD_NOT_FOUND")
	// Its 2000 reserved bytes are free again.
	e.create(t, alice, 2000, 1000)

	c, err := e.client.CreateCapability(alice, &mediav1.CreateCapabilityRequest{BlobId: blob, Ttl: durationpb.New(10 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * 24 * time.Hour) // past the 48 h lease, not the capability
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.download(bob, blob, 0, 0, c.GetCapability()); err != nil {
		t.Fatalf("a live capability's blob expired: %v", err)
	}
	e.clock.Advance(6 * 24 * time.Hour)
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", blob)); !os.IsNotExist(err) {
		t.Fatalf("a blob past its lease is still on disk: %v", err)
	}
	_, err = e.download(alice, blob, 0, 0, nil)
	wantErr(t, err, codes.NotFound, "BLOB_NOT_FOUND")
}

// TestCollectKeepsOwnedBytes: a blob queued for deletion that gained an owner meanwhile
// (a completion racing the last owner's departure) keeps its bytes.
func TestCollectKeepsOwnedBytes(t *testing.T) {
	e := newEnv(t, nil)
	blob := e.upload(t, e.as(t, "alice"), data(100, 1))
	if err := e.records.Update(context.Background(), func(tx kv.Tx) error {
		return tx.Put([]byte("media/gc/"+blob), nil)
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := e.download(e.as(t, "alice"), blob, 0, 0, nil); err != nil || len(got) != 100 {
		t.Fatalf("an owned blob lost its bytes: %v", err)
	}
}
