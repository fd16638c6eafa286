package protolimits_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/guardyn/guardyn/proto/apidesc"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	_ "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	_ "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
)

func newLimits(t testing.TB) *protolimits.Limits {
	t.Helper()
	l, err := protolimits.FromAPI()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// requestMessages returns every message reachable from an RPC input of the Guardyn services,
// in a stable order.
func requestMessages(t testing.TB) []protoreflect.MessageDescriptor {
	t.Helper()
	files, err := apidesc.Files()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[protoreflect.FullName]bool{}
	var out []protoreflect.MessageDescriptor
	var visit func(md protoreflect.MessageDescriptor)
	visit = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		// Tests build and mutate generated messages, which need the generated descriptors.
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
		if err != nil {
			t.Fatalf("no generated type for %s: %v", md.FullName(), err)
		}
		out = append(out, mt.Descriptor())
		for i := range md.Fields().Len() {
			if fd := md.Fields().Get(i); fd.Message() != nil {
				visit(fd.Message())
			}
		}
	}
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "guardyn.") {
			return true
		}
		for i := range fd.Services().Len() {
			methods := fd.Services().Get(i).Methods()
			for j := range methods.Len() {
				visit(methods.Get(j).Input())
			}
		}
		return true
	})
	if len(out) < 50 {
		t.Fatalf("found only %d request messages; is the descriptor set complete?", len(out))
	}
	return out
}

// TestEveryRequestFieldHasLimit is rule (a) of docs/api.md: every string, bytes and repeated
// field a client can send carries a parseable maximum.
func TestEveryRequestFieldHasLimit(t *testing.T) {
	limits := newLimits(t)
	for _, md := range requestMessages(t) {
		if !strings.HasPrefix(string(md.FullName()), "guardyn.") {
			continue // well-known types such as google.protobuf.Duration hold only numbers
		}
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			needs := fd.IsList() || fd.IsMap() || fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind
			if _, ok := limits.Lookup(fd); needs && !ok {
				t.Errorf("%s has no limit: end its comment with e.g. \"Max: 64 bytes.\"", fd.FullName())
			}
		}
	}
}

func TestNewRejectsMisfitAnnotations(t *testing.T) {
	set, err := apidesc.FileDescriptorSet()
	if err != nil {
		t.Fatal(err)
	}
	// Put a size annotation on a numeric field of a copy of the descriptor set.
	const target = "guardyn.auth.v1.GetLoginChallengeRequest.device_id"
	patched := false
	for _, f := range set.GetFile() {
		if f.GetPackage() != "guardyn.auth.v1" {
			continue
		}
		files, err := apidesc.Files()
		if err != nil {
			t.Fatal(err)
		}
		d, err := files.FindDescriptorByName(target)
		if err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprint([]int32(d.ParentFile().SourceLocations().ByDescriptor(d).Path))
		for _, loc := range f.GetSourceCodeInfo().GetLocation() {
			if fmt.Sprint(loc.GetPath()) == path {
				loc.LeadingComments = proto.String(" Device. Max: 4 bytes.\n")
				patched = true
			}
		}
	}
	if !patched {
		t.Fatalf("source location of %s not found", target)
	}
	files, err := protodescNewFiles(set)
	if err != nil {
		t.Fatal(err)
	}
	_, err = protolimits.New(files)
	if !errors.Is(err, protolimits.ErrBadAnnotation) || !strings.Contains(err.Error(), target) {
		t.Fatalf("New = %v, want ErrBadAnnotation naming %s", err, target)
	}
}

// step is one hop from a message to a field (element 0 when the field is repeated).
type step struct {
	fd protoreflect.FieldDescriptor
}

// filled returns a new message of type md with every field at its limit: strings and bytes at
// their maximum size, repeated fields at their maximum count, nested messages filled likewise.
// Strings use a two-byte character so that counting bytes instead of characters would fail.
func filled(t testing.TB, limits *protolimits.Limits, md protoreflect.MessageDescriptor) protoreflect.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		t.Fatalf("no generated type for %s: %v", md.FullName(), err)
	}
	m := mt.New()
	fill(limits, m, 0)
	return m
}

func fill(limits *protolimits.Limits, m protoreflect.Message, depth int) {
	if depth > 8 {
		return
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && m.WhichOneof(fd.ContainingOneof()) != nil {
			continue // one member of a oneof is enough
		}
		limit, _ := limits.Lookup(fd)
		switch {
		case fd.IsList():
			list := m.Mutable(fd).List()
			for range limit.Items {
				list.Append(elementAt(limits, m, fd, limit, limit.Size, depth))
			}
		case fd.Message() != nil:
			fill(limits, m.Mutable(fd).Message(), depth+1)
		case limit.Size > 0:
			m.Set(fd, sized(fd, limit, limit.Size))
		}
	}
}

func elementAt(limits *protolimits.Limits, m protoreflect.Message, fd protoreflect.FieldDescriptor, limit protolimits.Limit, size, depth int) protoreflect.Value {
	list := m.Mutable(fd).List()
	if fd.Message() != nil {
		v := list.NewElement()
		fill(limits, v.Message(), depth+1)
		return v
	}
	if limit.Size > 0 {
		return sized(fd, limit, size)
	}
	return list.NewElement() // a number
}

// sized returns a string or bytes value of n units.
func sized(fd protoreflect.FieldDescriptor, limit protolimits.Limit, n int) protoreflect.Value {
	if fd.Kind() == protoreflect.StringKind {
		return protoreflect.ValueOfString(strings.Repeat("é", n))
	}
	return protoreflect.ValueOfBytes(bytes.Repeat([]byte{0xa5}, n))
}

// annotated lists the paths from md to every annotated field, entering element 0 of repeated
// message fields.
func annotated(limits *protolimits.Limits, md protoreflect.MessageDescriptor, prefix []step, visit func([]step, protolimits.Limit)) {
	if len(prefix) > 8 {
		return
	}
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		path := append(append([]step(nil), prefix...), step{fd})
		if limit, ok := limits.Lookup(fd); ok {
			visit(path, limit)
		}
		if fd.Message() != nil {
			annotated(limits, fd.Message(), path, visit)
		}
	}
}

// parentOf walks path (all but its last step) from m, returning the message holding the field.
// Entering a oneof member that filled did not choose fills that member.
func parentOf(limits *protolimits.Limits, m protoreflect.Message, path []step) protoreflect.Message {
	for _, s := range path[:len(path)-1] {
		switch {
		case s.fd.IsList():
			m = m.Mutable(s.fd).List().Get(0).Message()
		case s.fd.ContainingOneof() != nil && !m.Has(s.fd):
			m = m.Mutable(s.fd).Message()
			fill(limits, m, 0)
		default:
			m = m.Mutable(s.fd).Message()
		}
	}
	return m
}

func pathString(path []step, element bool) string {
	var names []string
	for i, s := range path {
		name := string(s.fd.Name())
		if s.fd.IsList() && (i < len(path)-1 || element) {
			name += "[0]"
		}
		names = append(names, name)
	}
	return strings.Join(names, ".")
}

// TestCheckAcceptsMessagesAtTheirLimits fills every request message to its limits, which Check
// must accept.
func TestCheckAcceptsMessagesAtTheirLimits(t *testing.T) {
	limits := newLimits(t)
	for _, md := range requestMessages(t) {
		m := filled(t, limits, md)
		if err := limits.Check(m.Interface()); err != nil {
			t.Errorf("Check(filled %s) = %v, want nil", md.FullName(), err)
		}
	}
}

// TestCheckRejectsEachOversizeField breaks one limit at a time in a filled request message and
// expects Check to name exactly that field, its limit and its size.
func TestCheckRejectsEachOversizeField(t *testing.T) {
	limits := newLimits(t)
	cases := 0
	for _, md := range requestMessages(t) {
		annotated(limits, md, nil, func(path []step, limit protolimits.Limit) {
			fd := path[len(path)-1].fd
			type breakage struct {
				name    string
				apply   func(protoreflect.Message)
				path    string
				items   bool
				actual  int
				enabled bool
			}
			breakages := []breakage{
				{
					name: "one item too many", enabled: fd.IsList(), items: true,
					path: pathString(path, false), actual: limit.Items + 1,
					apply: func(m protoreflect.Message) {
						parent := parentOf(limits, m, path)
						parent.Mutable(fd).List().Append(elementAt(limits, parent, fd, limit, limit.Size, len(path)))
					},
				},
				{
					name: "one unit too long", enabled: limit.Size > 0,
					path: pathString(path, true), actual: limit.Size + 1,
					apply: func(m protoreflect.Message) { setSize(limits, m, path, limit, limit.Size+1) },
				},
				{
					name: "one unit too short for an exact size", enabled: limit.Exact,
					path: pathString(path, true), actual: limit.Size - 1,
					apply: func(m protoreflect.Message) { setSize(limits, m, path, limit, limit.Size-1) },
				},
			}
			for _, b := range breakages {
				if !b.enabled {
					continue
				}
				cases++
				m := filled(t, limits, md)
				b.apply(m)
				err := limits.Check(m.Interface())
				var le *protolimits.LimitError
				if !errors.Is(err, protolimits.ErrLimitExceeded) || !errors.As(err, &le) {
					t.Errorf("%s.%s %s: Check = %v, want a LimitError", md.FullName(), b.path, b.name, err)
					continue
				}
				if le.Message != md.FullName() || le.Path != b.path || le.Items != b.items || le.Actual != b.actual || le.Limit != limit {
					t.Errorf("%s.%s %s: got %+v", md.FullName(), b.path, b.name, le)
				}
				if !strings.Contains(err.Error(), b.path) || !strings.Contains(err.Error(), fmt.Sprint(b.actual)) {
					t.Errorf("error %q does not name the field and its size", err)
				}
				md := le.Metadata()
				if md["field"] != b.path || md["limit"] != limit.String() || md["actual"] != fmt.Sprint(b.actual) {
					t.Errorf("Metadata() = %v", md)
				}
			}
		})
	}
	if cases < 60 {
		t.Fatalf("only %d oversize cases ran", cases)
	}
}

func setSize(limits *protolimits.Limits, m protoreflect.Message, path []step, limit protolimits.Limit, n int) {
	parent := parentOf(limits, m, path)
	fd := path[len(path)-1].fd
	if fd.IsList() {
		parent.Mutable(fd).List().Set(0, sized(fd, limit, n))
		return
	}
	parent.Set(fd, sized(fd, limit, n))
}

func TestCheckExamples(t *testing.T) {
	limits := newLimits(t)
	key := bytes.Repeat([]byte{4}, 65)
	tests := []struct {
		name string
		msg  proto.Message
		want string // substring of the error; empty when the message is valid
	}{
		{"valid register", &authv1.RegisterRequest{Username: "alice", IdentityKey: key, DeviceName: "phone", Signature: make([]byte, 70)}, ""},
		{"empty message", &authv1.RegisterRequest{}, "identity_key is 0 bytes, want exactly 65"},
		{"32 multibyte characters fit", &authv1.RegisterRequest{Username: strings.Repeat("ü", 32), IdentityKey: key}, ""},
		{"33 characters do not", &authv1.RegisterRequest{Username: strings.Repeat("a", 33), IdentityKey: key}, "guardyn.auth.v1.RegisterRequest.username is 33 characters, want at most 32"},
		{"short identity key", &authv1.RegisterRequest{IdentityKey: key[:64]}, "identity_key is 64 bytes, want exactly 65"},
		{"long signature", &authv1.RegisterRequest{IdentityKey: key, Signature: make([]byte, 73)}, "signature is 73 bytes, want at most 72"},
		{"unset oneof", &authv1.LookupIdentityRequest{}, ""},
		{"oneof member", &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_UserId{UserId: strings.Repeat("u", 65)}}, "user_id is 65 characters, want at most 64"},
		{"nested device address", &messagingv1.CreateGroupRequest{GroupId: []byte{1}, Members: []*commonv1.DeviceAddress{{UserId: "a"}, {UserId: strings.Repeat("u", 65)}}}, "members[1].user_id is 65 characters"},
		{"too many envelopes", &messagingv1.SendMessageRequest{ClientMessageId: make([]byte, 16), Envelopes: make([]*messagingv1.DeviceEnvelope, 17)}, "envelopes has 17 items, want at most 16"},
		{"big envelope", &messagingv1.SendMessageRequest{ClientMessageId: make([]byte, 16), Envelopes: []*messagingv1.DeviceEnvelope{{SealedEnvelope: make([]byte, 256<<10+1)}}}, "envelopes[0].sealed_envelope is 262145 bytes, want at most 262144"},
		{"stream wraps send", &messagingv1.SendStreamRequest{Message: &messagingv1.SendMessageRequest{ClientMessageId: make([]byte, 15)}}, "guardyn.messaging.v1.SendStreamRequest.message.client_message_id is 15 bytes, want exactly 16"},
		{"absent nested message", &messagingv1.SendStreamRequest{}, ""},
		{"bad ack id", &messagingv1.AckMessagesRequest{MessageIds: [][]byte{make([]byte, 16), make([]byte, 17)}}, "message_ids[1] is 17 bytes, want exactly 16"},
		{"web push auth", &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{P256Dh: key, Auth: make([]byte, 15)}}}, "web_push.auth is 15 bytes, want exactly 16"},
		{"nil message", nil, ""},
		{"typed nil message", (*authv1.RegisterRequest)(nil), ""},
		{"message without limits", &authv1.ListDevicesResponse{Devices: []*authv1.Device{{Name: strings.Repeat("x", 1000)}}}, ""},
	}
	for _, tt := range tests {
		err := limits.Check(tt.msg)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Check = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Check = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// TestCheckConcurrently runs Check from several goroutines on a fresh Limits, whose per-type
// cache fills while they run (go test -race finds unsynchronised access).
func TestCheckConcurrently(t *testing.T) {
	limits := newLimits(t)
	good := &messagingv1.SendMessageRequest{ClientMessageId: make([]byte, 16), Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1}}}
	bad := &messagingv1.SendMessageRequest{ClientMessageId: make([]byte, 3)}
	errs := make(chan error, 8)
	for i := range cap(errs) {
		go func() {
			var err error
			for range 200 {
				if err = limits.Check(good); err != nil {
					break
				}
				if limits.Check(bad) == nil {
					err = fmt.Errorf("goroutine %d: bad message accepted", i)
					break
				}
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
