package messaging

import (
	"bytes"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/server"
)

// What the Delivery Service reads of the MLS messages it orders. Handshakes reach it as
// PrivateMessages (the member's PrivateHandshake), so proposals, credentials and key
// packages stay encrypted to the group; RFC 9420 §6.3 leaves the outer fields in the
// clear for exactly this use: the group id, the epoch and the content type. A Welcome
// carries the KeyPackageRef of each member it adds in the clear (§12.4.3.1). mls.Inspect
// reads no more than that and verifies nothing: the fields are checked against the
// request so that the service stores what it routes as what it claims to be, not trusted
// beyond that.

// MLS wire formats (RFC 9420 §6).
const (
	wirePrivateMessage = 2
	wireWelcome        = 3
)

// checkHandshake refuses a commit (or a proposal) that is not a PrivateMessage of group
// gid at epoch carrying a commit (or a proposal). A PublicMessage would show the service
// the proposals and the members' credentials.
func checkHandshake(msg, gid []byte, epoch uint64, commit bool) error {
	what := "proposal"
	if commit {
		what = "commit"
	}
	info, err := mls.Inspect(msg)
	if err != nil {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the %s is not an MLS message: %v", what, err)
	}
	if info.WireFormat != wirePrivateMessage {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the %s must be an MLS PrivateMessage, got wire format %d", what, info.WireFormat)
	}
	if !bytes.Equal(info.GroupID, gid) || info.Epoch != epoch {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the %s belongs to another group or to epoch %d, not %d", what, info.Epoch, epoch)
	}
	if info.Commit != commit || info.Proposal == commit {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the message does not carry a %s", what)
	}
	return nil
}

// checkApplication refuses a group message that is not a PrivateMessage of group gid at
// epoch carrying application data: the group log would otherwise store, and fan out to
// every member, bytes the members cannot process (a handshake smuggled past the one-commit-
// per-epoch order, a PublicMessage in the clear, a message of another group), and only
// their clients would notice.
func checkApplication(msg, gid []byte, epoch uint64) error {
	info, err := mls.Inspect(msg)
	if err != nil {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the group message is not an MLS message: %v", err)
	}
	if info.WireFormat != wirePrivateMessage {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the group message must be an MLS PrivateMessage, got wire format %d", info.WireFormat)
	}
	if !bytes.Equal(info.GroupID, gid) || info.Epoch != epoch {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the group message belongs to another group or to epoch %d, not %d", info.Epoch, epoch)
	}
	if info.Commit || info.Proposal {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "a handshake goes through SubmitCommit or SubmitProposal, not SendGroupMessage")
	}
	return nil
}

// checkWelcome refuses a Welcome that does not add exactly n distinct key packages, one
// per device the commit declares added.
func checkWelcome(welcome []byte, n int) error {
	info, err := mls.Inspect(welcome)
	if err != nil {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the Welcome is not an MLS message: %v", err)
	}
	if info.WireFormat != wireWelcome {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the Welcome has wire format %d", info.WireFormat)
	}
	if len(info.NewMembers) != n {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the Welcome adds %d key packages but the commit declares %d added devices", len(info.NewMembers), n)
	}
	for i, r := range info.NewMembers {
		for _, earlier := range info.NewMembers[:i] {
			if bytes.Equal(r, earlier) {
				return server.Error(codes.InvalidArgument, reasonMalformedRequest, "the Welcome names a key package twice")
			}
		}
	}
	return nil
}
