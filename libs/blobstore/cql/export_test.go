package cql

import (
	"context"
	"testing"

	"github.com/guardyn/guardyn/libs/blobstore"
)

// OwnerForTest returns the data id whose chunks blob d reads.
func OwnerForTest(t testing.TB, s *Store, d blobstore.Digest) []byte {
	t.Helper()
	owner, _, err := s.blobHead(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return owner
}

// PartSizesForTest returns the bytes each media_chunks partition of a data id holds,
// keyed by part.
func PartSizesForTest(t testing.TB, s *Store, dataID []byte) map[int32]int {
	t.Helper()
	ctx := context.Background()
	sizes := map[int32]int{}
	for p := int32(0); p < 64; p++ {
		it := s.sess.Query(`SELECT data FROM media_chunks WHERE data_id = ? AND part = ?`, dataID, p).IterContext(ctx)
		var data []byte
		for it.Scan(&data) {
			sizes[p] += len(data)
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return sizes
}
