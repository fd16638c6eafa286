package messaging_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// BenchmarkGroupMessageBytes reports the bytes the server hands its stores (kv puts and
// msgstore appends, keys and fixed fields included) per group message to 100 member
// devices, as a multiple of the message size (docs/perf-groups.md).
func BenchmarkGroupMessageBytes(b *testing.B) {
	for _, size := range []int{256, 1 << 10, 16 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			gid := []byte("bytes")
			node, users := memberGroup(b, 101, gid)
			payload := mlsframe.PrivateMessage(gid, 0, mlsframe.Application, size)
			kv0, in0 := node.kv.written.Load(), node.inboxes.written.Load()
			b.ResetTimer()
			for i := range b.N {
				cid := bytes.Repeat([]byte{byte(i)}, 16)
				cid[0], cid[1] = byte(i>>8), byte(i>>16)
				if _, err := node.svc.SendGroupMessage(as(users[0]), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: payload, ClientMessageId: cid}); err != nil {
					b.Fatal(err)
				}
			}
			written := float64(node.kv.written.Load()-kv0+node.inboxes.written.Load()-in0) / float64(b.N)
			b.ReportMetric(written, "stored-B/op")
			b.ReportMetric(written/float64(len(payload)), "x-size")
			b.ReportMetric((written-2*float64(len(payload)))/100, "over-2x-B/member")
		})
	}
}
