package commonv1_test

import (
	"testing"

	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
)

func TestReasonRoundTrip(t *testing.T) {
	if got := commonv1.ErrorReason_ERROR_REASON_USERNAME_TAKEN.Reason(); got != "USERNAME_TAKEN" {
		t.Fatalf("Reason() = %q, want USERNAME_TAKEN", got)
	}
	for v := range commonv1.ErrorReason_name {
		r := commonv1.ErrorReason(v)
		if r == commonv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		got, ok := commonv1.ParseErrorReason(r.Reason())
		if !ok || got != r {
			t.Errorf("ParseErrorReason(%q) = %v, %v; want %v, true", r.Reason(), got, ok, r)
		}
	}
}

func TestParseErrorReasonRejectsUnknown(t *testing.T) {
	for _, s := range []string{"", "UNSPECIFIED", "ERROR_REASON_USERNAME_TAKEN", "username_taken", "NO_SUCH_REASON", "7"} {
		if r, ok := commonv1.ParseErrorReason(s); ok {
			t.Errorf("ParseErrorReason(%q) = %v, true; want false", s, r)
		}
	}
}
