package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
)

func TestFieldLimits(t *testing.T) {
	limits, err := protolimits.FromAPI()
	if err != nil {
		t.Fatal(err)
	}
	validate := FieldLimits(limits)
	if err := validate(&authv1.RegisterRequest{Username: "alice", IdentityKey: make([]byte, 65), DeviceName: "phone"}); err != nil {
		t.Fatalf("a request within its limits was refused: %v", err)
	}
	err = validate(&authv1.RegisterRequest{Username: "alice", IdentityKey: make([]byte, 65), DeviceName: strings.Repeat("x", 61)})
	if status.Code(err) != codes.InvalidArgument || Reason(err) != ReasonLimitExceeded || !strings.Contains(err.Error(), "device_name") {
		t.Fatalf("oversize device name: got %v (reason %q)", err, Reason(err))
	}
	if err := validate("not a proto message"); err != nil {
		t.Fatalf("a non-message was refused: %v", err)
	}
}
