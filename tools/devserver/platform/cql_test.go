package platform_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/cassandratest"
	"github.com/guardyn/guardyn/libs/msgstore/cql"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// TestMain stops the Cassandra this binary started for its CQL tests, if it started one.
func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }

// startOnCassandra starts the all-in-one server with its inboxes on the Cassandra that
// tools/ci/with-cassandra.sh started (GUARDYN_TEST_CQL) or one this test binary starts,
// in a keyspace of its own made by the schema migration. Without Java and Maven it skips
// saying so, or fails under CI=true.
func startOnCassandra(t *testing.T) *env {
	t.Helper()
	addr := cassandratest.Addr(t)
	uri := fmt.Sprintf("cql://%s/p%d?replication=1", addr, time.Now().UnixNano()%1e12)
	c, err := cql.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := cql.Migrate(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return startWith(t, func(c *platform.Config) { c.Messages = uri })
}

// TestMessagingOnCassandra runs the messaging scenarios of the embedded default with
// the inboxes on Cassandra (--messages=cql://...): backlog, live, ack, redelivery of
// unacknowledged messages and idempotent sends behave the same.
func TestMessagingOnCassandra(t *testing.T) {
	t.Run("BacklogThenLiveThenAck", func(t *testing.T) { backlogThenLiveThenAck(t, startOnCassandra(t)) })
	t.Run("UnackedMessagesComeBackAndSendsAreIdempotent", func(t *testing.T) {
		unackedMessagesComeBackAndSendsAreIdempotent(t, startOnCassandra(t))
	})
	t.Run("MediaChunks", func(t *testing.T) { mediaOnCassandra(t, startOnCassandra(t)) })
}

// mediaOnCassandra: with --messages=cql://... the media chunks live in the same
// keyspace: a 2.5 MiB upload in 1 MiB chunks downloads whole, the data dir holds no
// blob file, and a deleted blob is gone.
func mediaOnCassandra(t *testing.T, e *env) {
	alice := e.register(t, "alice")
	md := mediav1.NewMediaServiceClient(e.conn)
	body := make([]byte, 5<<19+17)
	for i := range body {
		body[i] = byte(i * 13)
	}
	up := must(md.CreateUpload(alice.ctx(t), &mediav1.CreateUploadRequest{TotalSize: uint64(len(body)), ChunkSize: 1 << 20}))
	s := must(md.UploadChunks(alice.ctx(t)))
	for off := 0; off < len(body); off += 1 << 20 {
		if err := s.Send(&mediav1.UploadChunksRequest{UploadId: up.GetUploadId(), Offset: uint64(off), Data: body[off:min(off+1<<20, len(body))]}); err != nil {
			t.Fatal(err)
		}
	}
	must(s.CloseAndRecv())
	sum := sha256.Sum256(body)
	blob := must(md.CompleteUpload(alice.ctx(t), &mediav1.CompleteUploadRequest{UploadId: up.GetUploadId(), Sha256: sum[:]})).GetBlobId()
	st := must(md.Download(alice.ctx(t), &mediav1.DownloadRequest{BlobId: blob}))
	var got []byte
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.GetData()...)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("downloaded %d bytes, want the %d uploaded", len(got), len(body))
	}
	if files, _ := filepath.Glob(filepath.Join(e.dir, "blobs", "*")); len(files) != 0 {
		t.Fatalf("the data dir holds blob files %v; the chunks belong in Cassandra", files)
	}
	must(md.DeleteBlob(alice.ctx(t), &mediav1.DeleteBlobRequest{BlobId: blob}))
	st = must(md.Download(alice.ctx(t), &mediav1.DownloadRequest{BlobId: blob}))
	wantErr(t, firstErr(st.Recv), codes.NotFound, "BLOB_NOT_FOUND")
}
