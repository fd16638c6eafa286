package apidesc_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/guardyn/guardyn/proto/apidesc"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
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
