package media_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/authn"
	blobembedded "github.com/guardyn/guardyn/libs/blobstore/embedded"
	"github.com/guardyn/guardyn/libs/kv"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/server"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/media"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one media service over real gRPC on loopback with embedded stores on disk.
type env struct {
	client  mediav1.MediaServiceClient
	svc     *media.Server
	records kv.Store
	clock   *clock
	dir     string
	issuer  *authn.Issuer
}

func newEnv(t testing.TB, tune func(*media.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	records, err := kvembedded.Open(filepath.Join(dir, kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { records.Close() })
	blobs, err := blobembedded.Open(filepath.Join(dir, blobembedded.DirName))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	cfg := media.Config{
		Records: records, Blobs: blobs, CapabilityKey: bytes.Repeat([]byte{7}, media.CapabilityKeySize),
		Now: clk.Now, Logger: slog.New(slog.DiscardHandler),
	}
	if tune != nil {
		tune(&cfg)
	}
	svc, err := media.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, tokenKey, _ := ed25519.GenerateKey(nil)
	issuer, err := authn.NewIssuer(tokenKey, time.Hour, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := authn.NewVerifier(authn.VerifierConfig{Keys: []ed25519.PublicKey{issuer.PublicKey()}, Revocations: authn.NoRevocations{}, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	limits, err := protolimits.FromAPI()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Register:        func(r grpc.ServiceRegistrar) { mediav1.RegisterMediaServiceServer(r, svc) },
		Auth:            authn.NewInterceptor(verifier),
		Validate:        server.FieldLimits(limits),
		MaxMessageBytes: 5 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{client: mediav1.NewMediaServiceClient(conn), svc: svc, records: records, clock: clk, dir: dir, issuer: issuer}
}

// as returns a context authenticated as user's device 1.
func (e *env) as(t testing.TB, user string) context.Context {
	t.Helper()
	tok, _, err := e.issuer.Issue(user, 1, [16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func data(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed ^ byte(i*13+i>>9)
	}
	return b
}

// create starts an upload of body's size.
func (e *env) create(t testing.TB, ctx context.Context, size int, chunk uint32) string {
	t.Helper()
	resp, err := e.client.CreateUpload(ctx, &mediav1.CreateUploadRequest{TotalSize: uint64(size), ChunkSize: chunk})
	if err != nil {
		t.Fatalf("CreateUpload: %v", err)
	}
	return resp.GetUploadId()
}

// send streams chunks of body[from:] and returns the committed offset or the error.
func (e *env) send(ctx context.Context, id string, body []byte, from, chunk int) (uint64, error) {
	s, err := e.client.UploadChunks(ctx)
	if err != nil {
		return 0, err
	}
	for off := from; off < len(body); off += chunk {
		end := min(off+chunk, len(body))
		if err := s.Send(&mediav1.UploadChunksRequest{UploadId: id, Offset: uint64(off), Data: body[off:end]}); err != nil {
			break // the server ended the stream: CloseAndRecv has its status
		}
	}
	resp, err := s.CloseAndRecv()
	return resp.GetCommittedOffset(), err
}

// upload stores body as a completed blob of the user in ctx and returns its id.
func (e *env) upload(t testing.TB, ctx context.Context, body []byte) string {
	t.Helper()
	const chunk = 1 << 20
	id := e.create(t, ctx, len(body), chunk)
	if n, err := e.send(ctx, id, body, 0, chunk); err != nil || n != uint64(len(body)) {
		t.Fatalf("UploadChunks = %d, %v", n, err)
	}
	sum := sha256.Sum256(body)
	resp, err := e.client.CompleteUpload(ctx, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: sum[:]})
	if err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}
	return resp.GetBlobId()
}

// download reads a range of a blob.
func (e *env) download(ctx context.Context, blob string, off, n uint64, capability []byte) ([]byte, error) {
	s, err := e.client.Download(ctx, &mediav1.DownloadRequest{BlobId: blob, Offset: off, Length: n, Capability: capability})
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if resp.GetOffset() != off+uint64(len(out)) {
			return out, fmt.Errorf("response at %d, want %d", resp.GetOffset(), off+uint64(len(out)))
		}
		out = append(out, resp.GetData()...)
	}
}

func wantErr(t testing.TB, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || server.Reason(err) != reason {
		t.Fatalf("got %v (reason %q), want %v/%s", err, server.Reason(err), code, reason)
	}
}

// snapshot is everything the service stores: its kv records and the files under the
// data dir with their hashes. A refused request must leave it unchanged.
func (e *env) snapshot(t testing.TB) string {
	t.Helper()
	var b bytes.Buffer
	err := e.records.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := tx.Scan([]byte("media/"), kv.PrefixEnd([]byte("media/")), 0)
		for _, p := range pairs {
			fmt.Fprintf(&b, "%s=%s\n", p.Key, p.Value)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(filepath.Join(e.dir, blobembedded.DirName), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			c, _ := os.ReadFile(path)
			files = append(files, fmt.Sprintf("%s %x", path, sha256.Sum256(c)))
		}
		return nil
	})
	sort.Strings(files)
	for _, f := range files {
		fmt.Fprintln(&b, f)
	}
	return b.String()
}

// unchanged runs fn and fails if it changed the stored state.
func (e *env) unchanged(t testing.TB, what string, fn func()) {
	t.Helper()
	before := e.snapshot(t)
	fn()
	if after := e.snapshot(t); after != before {
		t.Fatalf("%s changed stored state:\nbefore:\n%s\nafter:\n%s", what, before, after)
	}
}
