package embedded_test

import (
	"testing"

	"github.com/guardyn/guardyn/libs/blobstore"
	"github.com/guardyn/guardyn/libs/blobstore/blobstoretest"
	"github.com/guardyn/guardyn/libs/blobstore/embedded"
)

func TestContract(t *testing.T) {
	blobstoretest.Run(t, func(t testing.TB) blobstore.Store {
		s, err := embedded.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
