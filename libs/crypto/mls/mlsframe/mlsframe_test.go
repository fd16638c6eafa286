package mlsframe_test

import (
	"bytes"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
)

// TestFramesInspect: the frames decode as the MLS library's Inspect reads them, at the
// sizes asked for, across the varint length boundaries.
func TestFramesInspect(t *testing.T) {
	for _, size := range []int{0, 100, 16383, 16384, 16390, 64 << 10, 256 << 10} {
		for _, ct := range []byte{mlsframe.Application, mlsframe.Proposal, mlsframe.Commit} {
			m := mlsframe.PrivateMessage([]byte("group"), 7, ct, size)
			if size > 0 && len(m) != size {
				t.Fatalf("size %d: got %d bytes", size, len(m))
			}
			info, err := mls.Inspect(m)
			if err != nil {
				t.Fatalf("size %d, type %d: %v", size, ct, err)
			}
			if info.WireFormat != 2 || !bytes.Equal(info.GroupID, []byte("group")) || info.Epoch != 7 || info.Commit != (ct == mlsframe.Commit) || info.Proposal != (ct == mlsframe.Proposal) {
				t.Fatalf("size %d, type %d: %+v", size, ct, info)
			}
		}
	}
	if info, err := mls.Inspect(mlsframe.PublicCommit([]byte("group"), 7)); err != nil || info.WireFormat != 1 || !info.Commit || info.Epoch != 7 {
		t.Fatalf("public commit: %+v, %v", info, err)
	}
	if w := mlsframe.PaddedWelcome(1<<20, mlsframe.Ref(1)); len(w) != 1<<20 {
		t.Fatalf("padded Welcome of %d bytes", len(w))
	}
	info, err := mls.Inspect(mlsframe.Welcome(mlsframe.Ref(1), mlsframe.Ref(2)))
	if err != nil || info.WireFormat != 3 || len(info.NewMembers) != 2 || !bytes.Equal(info.NewMembers[1], mlsframe.Ref(2)) {
		t.Fatalf("welcome: %+v, %v", info, err)
	}
}
