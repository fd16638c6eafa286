package protolimits_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
)

// FuzzCheck decodes untrusted bytes as a request message (the type picked by which), as the
// gRPC server would, and checks it. Check must not panic; an error must be a consistent
// LimitError; an accepted message must stay accepted after a round trip.
func FuzzCheck(f *testing.F) {
	limits := newLimits(f)
	requests := requestMessages(f)
	index := map[string]uint16{}
	for i, md := range requests {
		index[string(md.FullName())] = uint16(i)
	}
	seed := func(m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(index[string(m.ProtoReflect().Descriptor().FullName())], b)
	}
	key := bytes.Repeat([]byte{4}, 65)
	seed(&authv1.RegisterRequest{Username: "alice", IdentityKey: key, DeviceName: "phone", Signature: make([]byte, 70)})
	seed(&authv1.RegisterRequest{Username: strings.Repeat("ü", 33), IdentityKey: key[:64]})
	seed(&authv1.UploadPreKeysRequest{OneTimeEcPrekeys: []*authv1.EcPreKey{{Id: 1, PublicKey: key}, {Id: 2, PublicKey: key[:3]}}})
	seed(&authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: "bob"}})
	seed(&messagingv1.SendMessageRequest{RecipientUserId: "u1", ClientMessageId: make([]byte, 16), Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: []byte("sealed")}}})
	seed(&messagingv1.SendStreamRequest{RequestId: 7, Message: &messagingv1.SendMessageRequest{ClientMessageId: make([]byte, 17)}})
	seed(&messagingv1.AckMessagesRequest{MessageIds: [][]byte{make([]byte, 16), make([]byte, 1)}})
	seed(&messagingv1.ReceiveRequest{AckMessageIds: [][]byte{make([]byte, 16), make([]byte, 17)}})
	seed(&messagingv1.SubmitCommitRequest{GroupId: []byte("g"), Added: []*commonv1.DeviceAddress{{UserId: "u", DeviceId: 2}}})
	seed(&notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{Endpoint: "https://push.example", P256Dh: key, Auth: make([]byte, 16)}}})
	f.Add(uint16(0), []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})

	f.Fuzz(func(t *testing.T, which uint16, data []byte) {
		md := requests[int(which)%len(requests)]
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
		if err != nil {
			t.Fatal(err)
		}
		m := mt.New().Interface()
		if proto.Unmarshal(data, m) != nil {
			return // the gRPC codec would have rejected the bytes already
		}
		err = limits.Check(m)
		if err != nil {
			var le *protolimits.LimitError
			if !errors.Is(err, protolimits.ErrLimitExceeded) || !errors.As(err, &le) {
				t.Fatalf("Check = %v, want a LimitError", err)
			}
			broken := le.Items && le.Actual > le.Limit.Items ||
				!le.Items && (le.Actual > le.Limit.Size || le.Limit.Exact && le.Actual != le.Limit.Size)
			if !broken || le.Path == "" {
				t.Fatalf("LimitError %+v does not describe a broken limit", le)
			}
			return
		}
		again := mt.New().Interface()
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(b, again); err != nil {
			t.Fatal(err)
		}
		if err := limits.Check(again); err != nil {
			t.Fatalf("accepted message rejected after a round trip: %v", err)
		}
	})
}
