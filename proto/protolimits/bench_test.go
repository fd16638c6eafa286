package protolimits_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

func benchMessages() map[string]proto.Message {
	envelopes := make([]*messagingv1.DeviceEnvelope, 16)
	for i := range envelopes {
		envelopes[i] = &messagingv1.DeviceEnvelope{DeviceId: uint32(i + 1), SealedEnvelope: make([]byte, 1024)}
	}
	return map[string]proto.Message{
		"SendMessage16x1KiB": &messagingv1.SendMessageRequest{RecipientUserId: "user-123", ClientMessageId: make([]byte, 16), Envelopes: envelopes},
		"Register":           &authv1.RegisterRequest{Username: "alice", IdentityKey: bytes.Repeat([]byte{4}, 65), DeviceName: "phone", Signature: make([]byte, 71)},
	}
}

// BenchmarkCheck measures Check as the interceptor runs it on every request.
func BenchmarkCheck(b *testing.B) {
	limits := newLimits(b)
	for name, m := range benchMessages() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := limits.Check(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnmarshal is the baseline: decoding the same request, which every server does anyway.
func BenchmarkUnmarshal(b *testing.B) {
	for name, m := range benchMessages() {
		data, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out := m.ProtoReflect().New().Interface()
				if err := proto.Unmarshal(data, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFromAPI measures the one-time cost of parsing the embedded descriptor set.
func BenchmarkFromAPI(b *testing.B) {
	for b.Loop() {
		newLimits(b)
	}
}
