package cql_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/blobstore"
	"github.com/guardyn/guardyn/libs/blobstore/blobstoretest"
	blobcql "github.com/guardyn/guardyn/libs/blobstore/cql"
	"github.com/guardyn/guardyn/libs/cassandratest"
	"github.com/guardyn/guardyn/libs/msgstore/cql"
)

func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }

var keyspaceSeq atomic.Int64

// freshKeyspace migrates a keyspace of its own for one test: the contract's tests use
// the same upload ids.
func freshKeyspace(t testing.TB) cql.Config {
	t.Helper()
	c := cql.Config{
		Hosts:       []string{cassandratest.Addr(t)},
		Keyspace:    fmt.Sprintf("b%d_%d", time.Now().UnixNano()%1e12, keyspaceSeq.Add(1)),
		Replication: 1,
	}
	if err := cql.Migrate(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func open(t testing.TB, c cql.Config) *blobcql.Store {
	t.Helper()
	s, err := blobcql.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestContract runs the blobstore contract suite, unchanged, on Cassandra.
func TestContract(t *testing.T) {
	blobstoretest.Run(t, func(t testing.TB) blobstore.Store { return open(t, freshKeyspace(t)) })
}

// TestChunksSpreadOverParts: a blob of 10 MiB uploaded in 1 MiB appends lies in three
// media_chunks partitions (4 MiB parts), none above PartSize plus one append, and reads
// back whole and by ranges that cross parts from another store of the same keyspace.
func TestChunksSpreadOverParts(t *testing.T) {
	c := freshKeyspace(t)
	s := open(t, c)
	ctx := context.Background()
	data := make([]byte, 10<<20+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := s.CreateUpload(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += blobstore.MaxAppendSize {
		end := min(off+blobstore.MaxAppendSize, len(data))
		if _, err := s.Append(ctx, "big", int64(off), data[off:end]); err != nil {
			t.Fatal(err)
		}
	}
	d := blobstore.Digest(sha256.Sum256(data))
	if _, err := s.Commit(ctx, "big", d); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUpload(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	parts := blobcql.PartSizesForTest(t, s, blobcql.OwnerForTest(t, s, d))
	if len(parts) != 3 {
		t.Fatalf("a 10 MiB blob lies in %d partitions, want 3: %v", len(parts), parts)
	}
	for p, n := range parts {
		if n > blobcql.PartSize+blobstore.MaxAppendSize {
			t.Fatalf("partition %d holds %d bytes, over %d", p, n, blobcql.PartSize+blobstore.MaxAppendSize)
		}
	}
	other := open(t, c)
	b, err := other.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d of %d bytes, equal %v, %v", len(got), len(data), bytes.Equal(got, data), err)
	}
	p := make([]byte, 3<<20)
	if n, err := b.ReadAt(p, 3<<20); err != nil || n != len(p) || !bytes.Equal(p, data[3<<20:6<<20]) {
		t.Fatalf("ReadAt across parts = %d, %v", n, err)
	}
}

// TestDuplicateUploadKeepsFirstOwner: the same bytes uploaded twice commit to one blob
// owned by the first upload; deleting both uploads leaves it readable, and deleting the
// blob removes its bytes.
func TestDuplicateUploadKeepsFirstOwner(t *testing.T) {
	s := open(t, freshKeyspace(t))
	ctx := context.Background()
	data := bytes.Repeat([]byte("media"), 1000)
	d := blobstore.Digest(sha256.Sum256(data))
	for _, id := range []string{"first", "second"} {
		if err := s.CreateUpload(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, id, 0, data); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, id, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"second", "first"} {
		if err := s.DeleteUpload(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Open(ctx, d)
	if err != nil {
		t.Fatalf("blob after both uploads are deleted: %v", err)
	}
	got := make([]byte, len(data))
	if n, err := b.ReadAt(got, 0); n != len(data) || (err != nil && err != io.EOF) || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	owner := blobcql.OwnerForTest(t, s, d)
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, d); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Open after Delete: %v", err)
	}
	if n := len(blobcql.PartSizesForTest(t, s, owner)); n != 0 {
		t.Fatalf("%d chunk partitions left after Delete", n)
	}
}

// TestUnreachableCluster: Open against a port nothing listens on fails naming the hosts.
func TestUnreachableCluster(t *testing.T) {
	c := cql.Config{Hosts: []string{"127.0.0.1:1"}, Keyspace: "guardyn", Timeout: 2 * time.Second}
	_, err := blobcql.Open(context.Background(), c)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("127.0.0.1:1")) {
		t.Fatalf("Open of an unreachable cluster: %v", err)
	}
}
