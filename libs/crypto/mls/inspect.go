package mls

import (
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// MessageInfo is what a Delivery Service can read from an MLSMessage
// without any group secret: enough to route it and to accept one commit per
// epoch.
type MessageInfo struct {
	// WireFormat is 1 PublicMessage, 2 PrivateMessage, 3 Welcome,
	// 4 GroupInfo, 5 KeyPackage.
	WireFormat uint16
	// GroupID and Epoch are set for PublicMessage, PrivateMessage and
	// GroupInfo.
	GroupID []byte
	Epoch   uint64
	// Commit is true for a handshake message carrying a commit; a Delivery
	// Service accepts the first commit of each epoch and refuses the rest.
	Commit bool
	// Proposal is true for a handshake message carrying a proposal.
	Proposal bool
	// NewMembers holds, for a Welcome, the KeyPackageRef of every member it
	// adds (RFC 9420 §12.4.3.1: these are in the clear), so a Delivery Service
	// can check how many devices a Welcome is for.
	NewMembers [][]byte
	// CipherSuite is set for GroupInfo, Welcome and KeyPackage.
	CipherSuite CipherSuite
	// GroupContextExtensions are a GroupInfo's: for example the
	// external_senders an external sender finds its index in.
	GroupContextExtensions []Extension
}

// Inspect decodes msg far enough to fill a MessageInfo. It checks syntax
// only: no signature or MAC is verified, so a Delivery Service must not
// trust the fields beyond routing and ordering.
func Inspect(msg []byte) (*MessageInfo, error) {
	m, err := wire.DecodeMLSMessage(msg)
	if err != nil {
		return nil, err
	}
	info := &MessageInfo{WireFormat: uint16(m.WireFormat)}
	var ct wire.ContentType
	switch m.WireFormat {
	case wire.WirePublicMessage:
		c := &m.PublicMessage.Content
		info.GroupID, info.Epoch, ct = c.GroupID, c.Epoch, c.ContentType
	case wire.WirePrivateMessage:
		p := m.PrivateMessage
		info.GroupID, info.Epoch, ct = p.GroupID, p.Epoch, p.ContentType
	case wire.WireGroupInfo:
		gc := &m.GroupInfo.GroupContext
		info.GroupID, info.Epoch = gc.GroupID, gc.Epoch
		info.CipherSuite, info.GroupContextExtensions = CipherSuite(gc.CipherSuite), fromWireExtensions(gc.Extensions)
	case wire.WireWelcome:
		info.CipherSuite = CipherSuite(m.Welcome.CipherSuite)
		for _, s := range m.Welcome.Secrets {
			info.NewMembers = append(info.NewMembers, s.NewMember)
		}
	case wire.WireKeyPackage:
		info.CipherSuite = CipherSuite(m.KeyPackage.CipherSuite)
	default:
		return nil, fmt.Errorf("%w: wire format %d", ErrUnexpectedMessage, m.WireFormat)
	}
	info.Commit = ct == wire.ContentCommit
	info.Proposal = ct == wire.ContentProposal
	return info, nil
}
