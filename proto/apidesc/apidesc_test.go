package apidesc_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/guardyn/guardyn/proto/apidesc"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	_ "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	_ "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	_ "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	_ "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	_ "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	_ "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

func TestFilesCarryComments(t *testing.T) {
	files, err := apidesc.Files()
	if err != nil {
		t.Fatal(err)
	}
	// The embedded set must describe the same messages as the generated code.
	generated := (&authv1.RegisterRequest{}).ProtoReflect().Descriptor()
	d, err := files.FindDescriptorByName(generated.FullName())
	if err != nil {
		t.Fatalf("find %s: %v", generated.FullName(), err)
	}
	msg := d.(protoreflect.MessageDescriptor)
	if got, want := msg.Fields().Len(), generated.Fields().Len(); got != want {
		t.Fatalf("embedded %s has %d fields, generated code %d: descriptor set is stale", msg.FullName(), got, want)
	}
	field := msg.Fields().ByName("identity_key")
	comment := msg.ParentFile().SourceLocations().ByDescriptor(field).LeadingComments
	if !strings.Contains(comment, "Exactly: 65 bytes.") {
		t.Fatalf("identity_key comment = %q, want it to carry its limit", comment)
	}
}

func TestFileDescriptorSetIsACopy(t *testing.T) {
	a, err := apidesc.FileDescriptorSet()
	if err != nil {
		t.Fatal(err)
	}
	a.File = nil
	b, err := apidesc.FileDescriptorSet()
	if err != nil {
		t.Fatal(err)
	}
	if len(b.GetFile()) == 0 {
		t.Fatal("second FileDescriptorSet call saw the first caller's mutation")
	}
}

// TestDescriptorSetMatchesGeneratedCode compares every Guardyn file of the embedded set with the
// descriptor compiled into its generated Go package, so a stale descriptor.binpb is caught even
// where protoc is not installed.
func TestDescriptorSetMatchesGeneratedCode(t *testing.T) {
	set, err := apidesc.FileDescriptorSet()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, embedded := range set.GetFile() {
		if !strings.HasPrefix(embedded.GetName(), "guardyn/") {
			continue
		}
		generated, err := protoregistry.GlobalFiles.FindFileByPath(embedded.GetName())
		if err != nil {
			t.Errorf("%s is in the descriptor set but its Go package is not linked into this test: %v", embedded.GetName(), err)
			continue
		}
		stripped := proto.Clone(embedded).(*descriptorpb.FileDescriptorProto)
		stripped.SourceCodeInfo = nil
		if !proto.Equal(stripped, protodesc.ToFileDescriptorProto(generated)) {
			t.Errorf("%s differs between descriptor.binpb and the generated code: run go run ./tools/protogen", embedded.GetName())
		}
		checked++
	}
	if checked < 7 {
		t.Fatalf("checked %d files, want every Guardyn proto file", checked)
	}
}
