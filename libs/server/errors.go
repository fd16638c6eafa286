package server

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the google.rpc.ErrorInfo domain of every error Guardyn returns.
const Domain = "guardyn.dev"

// Reasons used by the server package itself. Services define their own
// reasons next to their handlers; all reasons are stable UPPER_SNAKE strings
// that clients may switch on.
const (
	ReasonInternal        = "INTERNAL"
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	// ReasonShuttingDown ends streams (UNAVAILABLE) when the server stops: the
	// client reconnects, to this server once it is back or to another one.
	ReasonShuttingDown = "SHUTTING_DOWN"
	// ReasonStoreUnavailable comes with UNAVAILABLE when a store of a cluster backend
	// (kv.ErrUnavailable) could not answer: the call may be retried. Its transaction
	// wrote nothing, or, when the cluster failed while committing it, all of it.
	ReasonStoreUnavailable = "STORE_UNAVAILABLE"
)

// Error returns a gRPC status error with code, a human-readable message built
// from format and args (fmt.Sprintf rules, used verbatim when args is empty),
// and a google.rpc.ErrorInfo detail carrying reason in the Guardyn domain.
func Error(code codes.Code, reason, format string, args ...any) error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	st := status.New(code, msg)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain})
	if err != nil {
		// WithDetails only fails for code OK or an unmarshalable detail;
		// neither can leave the caller without an error to return.
		return st.Err()
	}
	return withInfo.Err()
}

// Reason returns the ErrorInfo reason attached to err by [Error], or "" when
// err is not a status error or carries no Guardyn ErrorInfo.
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info.GetReason()
		}
	}
	return ""
}

// isStatus reports whether err already carries a gRPC status, so that a
// deliberate status from a hook is passed through instead of being rewrapped.
func isStatus(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se)
}
