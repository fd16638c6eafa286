package server

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/proto/protolimits"
)

// ReasonLimitExceeded is the reason of a request field over its documented maximum.
const ReasonLimitExceeded = "LIMIT_EXCEEDED"

// FieldLimits is the Validator that enforces the "Max:" annotations of the API
// (proto/protolimits): a field over its limit fails with INVALID_ARGUMENT/LIMIT_EXCEEDED
// naming the field path, the limit and the size.
func FieldLimits(l *protolimits.Limits) Validator {
	return func(msg any) error {
		m, ok := msg.(proto.Message)
		if !ok {
			return nil
		}
		err := l.Check(m)
		if err == nil {
			return nil
		}
		if errors.Is(err, protolimits.ErrLimitExceeded) {
			return Error(codes.InvalidArgument, ReasonLimitExceeded, "%v", err)
		}
		return Error(codes.Internal, ReasonInternal, "checking field limits: %v", err)
	}
}
