// Package mlsinterop serves the MLS working group's MLSClient gRPC service
// (interop/proto/mls_client.proto of mlswg/mls-implementations) over
// libs/crypto/mls, so that the working group's test runner can drive
// Guardyn beside OpenMLS, mls-rs and the others through its scenario
// scripts. docs/crypto/mls.md ("Interop endpoint") says how to run it.
//
// It is a test endpoint: it keeps every state in memory, accepts every
// basic credential (the runner's actors are names, not accounts) and
// hands out private keys when the interface asks for them.
package mlsinterop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	pb "github.com/guardyn/guardyn/tools/mlsinterop/mlsclientpb"
)

// Name is what the endpoint reports to the runner.
const Name = "Guardyn"

// keyPackageLifetime is the validity of the KeyPackages the endpoint
// makes, around the present.
const keyPackageLifetime = 30 * 24 * time.Hour

// acceptBasic is the Authentication Service of the interop endpoint: the
// runner's actors are bare names, so every basic credential is admitted.
// Only credential types other than basic are refused.
func acceptBasic(credentialType uint16, _ []byte, _ [][]byte, _ []byte) error {
	if credentialType != 1 {
		return fmt.Errorf("credential type %d", credentialType)
	}
	return nil
}

// member is one group state of an actor.
type member struct {
	g    *mls.Group
	id   *mls.Identity
	name []byte
	// sent holds the proposals this state made in the current epoch: the
	// runner hands them back among a commit's proposals, and a member does
	// not process its own.
	sent map[string]bool
}

// pending is a KeyPackage waiting for its Welcome (a transaction).
type pending struct {
	kp   *mls.KeyPackage
	psks map[string][]byte
}

// reinit is a member whose group was closed by a ReInit, with the
// KeyPackage it made for the new group.
type reinit struct {
	old *member
	id  *mls.Identity
	kp  *mls.KeyPackage
}

// Server implements pb.MLSClientServer. Its zero value is not usable;
// call NewServer.
type Server struct {
	pb.UnimplementedMLSClientServer

	mu       sync.Mutex
	next     uint32
	members  map[uint32]*member
	pendings map[uint32]*pending
	reinits  map[uint32]*reinit
	signers  map[uint32]*mls.Identity
	now      func() time.Time
}

var _ pb.MLSClientServer = (*Server)(nil)

// NewServer returns an endpoint with no state; now is the clock of
// KeyPackage lifetimes (nil: time.Now).
func NewServer(now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{
		members: map[uint32]*member{}, pendings: map[uint32]*pending{}, reinits: map[uint32]*reinit{},
		signers: map[uint32]*mls.Identity{}, now: now,
	}
}

// errStatus maps library errors to gRPC statuses with the error text as
// the reason.
func errStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.InvalidArgument
	switch {
	case errors.Is(err, mls.ErrUnknownPSK), errors.Is(err, mls.ErrNoRatchetTree):
		code = codes.FailedPrecondition
	case errors.Is(err, mls.ErrNoPendingCommit), errors.Is(err, mls.ErrNotReInitialized):
		code = codes.FailedPrecondition
	}
	return status.Error(code, err.Error())
}

func (s *Server) id() uint32 {
	s.next++
	return s.next
}

func (s *Server) member(id uint32) (*member, error) {
	m, ok := s.members[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no state %d", id)
	}
	return m, nil
}

func (s *Server) addMember(g *mls.Group, id *mls.Identity, encrypt bool) uint32 {
	g.PrivateHandshake = encrypt
	n := s.id()
	s.members[n] = &member{g: g, id: id, name: id.Name(), sent: map[string]bool{}}
	return n
}

func (s *Server) newKeyPackage(id *mls.Identity) (*mls.KeyPackage, error) {
	t := s.now()
	return id.NewKeyPackage(uint64(t.Add(-time.Hour).Unix()), uint64(t.Add(keyPackageLifetime).Unix()))
}

// Name implements pb.MLSClientServer.
func (s *Server) Name(context.Context, *pb.NameRequest) (*pb.NameResponse, error) {
	return &pb.NameResponse{Name: Name}, nil
}

// SupportedCiphersuites implements pb.MLSClientServer.
func (s *Server) SupportedCiphersuites(context.Context, *pb.SupportedCiphersuitesRequest) (*pb.SupportedCiphersuitesResponse, error) {
	var out []uint32
	for _, cs := range mls.CipherSuites() {
		out = append(out, uint32(cs))
	}
	return &pb.SupportedCiphersuitesResponse{Ciphersuites: out}, nil
}

// CreateGroup implements pb.MLSClientServer.
func (s *Server) CreateGroup(_ context.Context, r *pb.CreateGroupRequest) (*pb.CreateGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := mls.NewIdentity(mls.CipherSuite(r.CipherSuite), r.Identity)
	if err != nil {
		return nil, errStatus(err)
	}
	g, err := mls.NewGroup(id, r.GroupId, acceptBasic)
	if err != nil {
		return nil, errStatus(err)
	}
	return &pb.CreateGroupResponse{StateId: s.addMember(g, id, r.EncryptHandshake)}, nil
}

// CreateKeyPackage implements pb.MLSClientServer.
func (s *Server) CreateKeyPackage(_ context.Context, r *pb.CreateKeyPackageRequest) (*pb.CreateKeyPackageResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := mls.NewIdentity(mls.CipherSuite(r.CipherSuite), r.Identity)
	if err != nil {
		return nil, errStatus(err)
	}
	kp, err := s.newKeyPackage(id)
	if err != nil {
		return nil, errStatus(err)
	}
	n := s.id()
	s.pendings[n] = &pending{kp: kp, psks: map[string][]byte{}}
	initPriv, encPriv := kp.PrivateKeys()
	return &pb.CreateKeyPackageResponse{TransactionId: n, KeyPackage: kp.Bytes(), InitPriv: initPriv, EncryptionPriv: encPriv, SignaturePriv: id.SignaturePrivateKey()}, nil
}

// JoinGroup implements pb.MLSClientServer.
func (s *Server) JoinGroup(_ context.Context, r *pb.JoinGroupRequest) (*pb.JoinGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pendings[r.TransactionId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no transaction %d", r.TransactionId)
	}
	g, err := mls.Join(p.kp, r.Welcome, acceptBasic, &mls.JoinOptions{RatchetTree: nonEmpty(r.RatchetTree), ExternalPSKs: p.psks, Now: s.now})
	if err != nil {
		return nil, errStatus(err)
	}
	delete(s.pendings, r.TransactionId)
	n := s.addMember(g, p.kp.Identity(), r.EncryptHandshake)
	return &pb.JoinGroupResponse{StateId: n, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// ExternalJoin implements pb.MLSClientServer.
func (s *Server) ExternalJoin(_ context.Context, r *pb.ExternalJoinRequest) (*pb.ExternalJoinResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, err := mls.Inspect(r.GroupInfo)
	if err != nil {
		return nil, errStatus(err)
	}
	var id *mls.Identity
	if r.RemovePrior {
		// The prior leaf is found by its signature key: rejoin with the
		// identity of this endpoint's latest state of that name in the
		// group.
		var latest uint32
		for n, m := range s.members {
			if n > latest && string(m.g.GroupID()) == string(info.GroupID) && string(m.name) == string(r.Identity) {
				latest, id = n, m.id
			}
		}
		if id == nil {
			return nil, status.Errorf(codes.FailedPrecondition, "no prior state of %q in the group to rejoin with", r.Identity)
		}
	} else if id, err = mls.NewIdentity(info.CipherSuite, r.Identity); err != nil {
		return nil, errStatus(err)
	}
	opts := &mls.ExternalJoinOptions{Resync: r.RemovePrior, ExternalPSKs: map[string][]byte{}}
	for _, p := range r.Psks {
		opts.ExternalPSKs[string(p.PskId)] = p.PskSecret
	}
	g, commit, err := mls.JoinExternal(id, r.GroupInfo, nonEmpty(r.RatchetTree), acceptBasic, opts)
	if err != nil {
		return nil, errStatus(err)
	}
	g.SetClock(s.now)
	n := s.addMember(g, id, r.EncryptHandshake)
	return &pb.ExternalJoinResponse{StateId: n, Commit: commit, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

// GroupInfo implements pb.MLSClientServer.
func (s *Server) GroupInfo(_ context.Context, r *pb.GroupInfoRequest) (*pb.GroupInfoResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	gi, err := m.g.GroupInfo(!r.ExternalTree)
	if err != nil {
		return nil, errStatus(err)
	}
	resp := &pb.GroupInfoResponse{GroupInfo: gi}
	if r.ExternalTree {
		resp.RatchetTree = m.g.RatchetTree()
	}
	return resp, nil
}

// StateAuth implements pb.MLSClientServer.
func (s *Server) StateAuth(_ context.Context, r *pb.StateAuthRequest) (*pb.StateAuthResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	return &pb.StateAuthResponse{StateAuthSecret: m.g.EpochAuthenticator()}, nil
}

// Export implements pb.MLSClientServer.
func (s *Server) Export(_ context.Context, r *pb.ExportRequest) (*pb.ExportResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	out, err := m.g.Export(r.Label, r.Context, int(r.KeyLength))
	if err != nil {
		return nil, errStatus(err)
	}
	return &pb.ExportResponse{ExportedSecret: out}, nil
}

// Protect implements pb.MLSClientServer.
func (s *Server) Protect(_ context.Context, r *pb.ProtectRequest) (*pb.ProtectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	ct, err := m.g.ProtectApplication(r.Plaintext, r.AuthenticatedData)
	if err != nil {
		return nil, errStatus(err)
	}
	return &pb.ProtectResponse{Ciphertext: ct}, nil
}

// Unprotect implements pb.MLSClientServer.
func (s *Server) Unprotect(_ context.Context, r *pb.UnprotectRequest) (*pb.UnprotectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	res, err := m.g.Process(r.Ciphertext)
	if err != nil {
		return nil, errStatus(err)
	}
	if res.Application == nil && (res.Proposal || res.NewEpoch) {
		return nil, status.Error(codes.InvalidArgument, "not an application message")
	}
	return &pb.UnprotectResponse{AuthenticatedData: res.AuthenticatedData, Plaintext: res.Application}, nil
}

// StorePSK implements pb.MLSClientServer.
func (s *Server) StorePSK(_ context.Context, r *pb.StorePSKRequest) (*pb.StorePSKResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.members[r.StateOrTransactionId]; ok {
		m.g.AddExternalPSK(r.PskId, r.PskSecret)
		return &pb.StorePSKResponse{}, nil
	}
	if p, ok := s.pendings[r.StateOrTransactionId]; ok {
		p.psks[string(r.PskId)] = slices.Clone(r.PskSecret)
		return &pb.StorePSKResponse{}, nil
	}
	return nil, status.Errorf(codes.NotFound, "no state or transaction %d", r.StateOrTransactionId)
}

// propose sends p from the member's state and remembers it as its own.
func (s *Server) propose(stateID uint32, p mls.Proposal) (*pb.ProposalResponse, error) {
	m, err := s.member(stateID)
	if err != nil {
		return nil, err
	}
	msg, err := m.g.Propose(p)
	if err != nil {
		return nil, errStatus(err)
	}
	m.sent[string(msg)] = true
	return &pb.ProposalResponse{Proposal: msg}, nil
}

// AddProposal implements pb.MLSClientServer.
func (s *Server) AddProposal(_ context.Context, r *pb.AddProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.propose(r.StateId, mls.AddProposal(r.KeyPackage))
}

// UpdateProposal implements pb.MLSClientServer.
func (s *Server) UpdateProposal(_ context.Context, r *pb.UpdateProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	msg, err := m.g.ProposeUpdate()
	if err != nil {
		return nil, errStatus(err)
	}
	m.sent[string(msg)] = true
	return &pb.ProposalResponse{Proposal: msg}, nil
}

// leafOf finds the leaf of the member whose credential identity is name.
func leafOf(g *mls.Group, name []byte) (uint32, error) {
	for leaf, id := range g.Members() {
		if string(id) == string(name) {
			return leaf, nil
		}
	}
	return 0, status.Errorf(codes.InvalidArgument, "no member %q", name)
}

// RemoveProposal implements pb.MLSClientServer.
func (s *Server) RemoveProposal(_ context.Context, r *pb.RemoveProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	leaf, err := leafOf(m.g, r.RemovedId)
	if err != nil {
		return nil, err
	}
	return s.propose(r.StateId, mls.RemoveProposal(leaf))
}

// ExternalPSKProposal implements pb.MLSClientServer.
func (s *Server) ExternalPSKProposal(_ context.Context, r *pb.ExternalPSKProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.propose(r.StateId, mls.ExternalPSKProposal(r.PskId))
}

// ResumptionPSKProposal implements pb.MLSClientServer.
func (s *Server) ResumptionPSKProposal(_ context.Context, r *pb.ResumptionPSKProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.propose(r.StateId, mls.ResumptionPSKProposal(r.EpochId))
}

func extensions(in []*pb.Extension) []mls.Extension {
	out := make([]mls.Extension, 0, len(in))
	for _, e := range in {
		out = append(out, mls.Extension{Type: uint16(e.ExtensionType), Data: e.ExtensionData})
	}
	return out
}

// GroupContextExtensionsProposal implements pb.MLSClientServer.
func (s *Server) GroupContextExtensionsProposal(_ context.Context, r *pb.GroupContextExtensionsProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.propose(r.StateId, mls.GroupContextExtensionsProposal(extensions(r.Extensions)))
}

// receive processes the proposals a commit names that the member did not
// send itself.
func (m *member) receive(proposals [][]byte) error {
	for _, p := range proposals {
		if m.sent[string(p)] {
			continue
		}
		if _, err := m.g.Process(p); err != nil {
			return fmt.Errorf("proposal: %w", err)
		}
	}
	return nil
}

// commit processes the by-reference proposals and commits them with the
// by-value ones.
func (s *Server) commit(r *pb.CommitRequest) (*member, *pb.CommitResponse, error) {
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, nil, err
	}
	if err := m.receive(r.ByReference); err != nil {
		return nil, nil, errStatus(err)
	}
	opts := mls.CommitOptions{UpdatePath: r.ForcePath, InlineTree: !r.ExternalTree}
	for _, d := range r.ByValue {
		switch string(d.ProposalType) {
		case "add":
			opts.Add = append(opts.Add, d.KeyPackage)
		case "remove":
			leaf, err := leafOf(m.g, d.RemovedId)
			if err != nil {
				return nil, nil, err
			}
			opts.Remove = append(opts.Remove, leaf)
		case "externalPSK":
			opts.ExternalPSKs = append(opts.ExternalPSKs, d.PskId)
		case "resumptionPSK":
			opts.ResumptionEpochs = append(opts.ResumptionEpochs, d.EpochId)
		case "groupContextExtensions":
			opts.GroupContextExtensions = extensions(d.Extensions)
		default:
			return nil, nil, status.Errorf(codes.InvalidArgument, "proposal type %q by value: send it as a proposal", d.ProposalType)
		}
	}
	res, err := m.g.Commit(opts)
	if err != nil {
		return nil, nil, errStatus(err)
	}
	resp := &pb.CommitResponse{Commit: res.Commit, Welcome: res.Welcome}
	if r.ExternalTree {
		resp.RatchetTree = m.g.PendingRatchetTree()
	}
	return m, resp, nil
}

// Commit implements pb.MLSClientServer.
func (s *Server) Commit(_ context.Context, r *pb.CommitRequest) (*pb.CommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, resp, err := s.commit(r)
	return resp, err
}

// HandleCommit implements pb.MLSClientServer.
func (s *Server) HandleCommit(_ context.Context, r *pb.HandleCommitRequest) (*pb.HandleCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.handleCommit(r)
	if err != nil {
		return nil, err
	}
	return &pb.HandleCommitResponse{StateId: r.StateId, EpochAuthenticator: m.g.EpochAuthenticator()}, nil
}

func (s *Server) handleCommit(r *pb.HandleCommitRequest) (*member, error) {
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	if err := m.receive(r.Proposal); err != nil {
		return nil, errStatus(err)
	}
	res, err := m.g.Process(r.Commit)
	if err != nil {
		return nil, errStatus(err)
	}
	if !res.NewEpoch {
		return nil, status.Error(codes.InvalidArgument, "not a commit")
	}
	m.sent = map[string]bool{}
	return m, nil
}

// HandlePendingCommit implements pb.MLSClientServer.
func (s *Server) HandlePendingCommit(_ context.Context, r *pb.HandlePendingCommitRequest) (*pb.HandleCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	if err := m.g.MergePendingCommit(); err != nil {
		return nil, errStatus(err)
	}
	m.sent = map[string]bool{}
	return &pb.HandleCommitResponse{StateId: r.StateId, EpochAuthenticator: m.g.EpochAuthenticator()}, nil
}

// ReInitProposal implements pb.MLSClientServer.
func (s *Server) ReInitProposal(_ context.Context, r *pb.ReInitProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.propose(r.StateId, mls.ReInitProposal(r.GroupId, mls.CipherSuite(r.CipherSuite), extensions(r.Extensions)))
}

// ReInitCommit implements pb.MLSClientServer: the ReInit proposal comes by
// reference.
func (s *Server) ReInitCommit(_ context.Context, r *pb.CommitRequest) (*pb.CommitResponse, error) {
	return s.Commit(context.Background(), r)
}

// closed records a member whose group a ReInit closed and makes its
// KeyPackage for the new group.
func (s *Server) closed(m *member) (*pb.HandleReInitCommitResponse, error) {
	params, ok := m.g.PendingReInit()
	if !ok {
		return nil, status.Error(codes.FailedPrecondition, "the commit was not a reinit")
	}
	id, err := mls.NewIdentity(params.CipherSuite, m.name)
	if err != nil {
		return nil, errStatus(err)
	}
	kp, err := s.newKeyPackage(id)
	if err != nil {
		return nil, errStatus(err)
	}
	n := s.id()
	s.reinits[n] = &reinit{old: m, id: id, kp: kp}
	return &pb.HandleReInitCommitResponse{ReinitId: n, KeyPackage: kp.Bytes(), EpochAuthenticator: m.g.EpochAuthenticator()}, nil
}

// HandlePendingReInitCommit implements pb.MLSClientServer.
func (s *Server) HandlePendingReInitCommit(_ context.Context, r *pb.HandlePendingCommitRequest) (*pb.HandleReInitCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	if err := m.g.MergePendingCommit(); err != nil {
		return nil, errStatus(err)
	}
	return s.closed(m)
}

// HandleReInitCommit implements pb.MLSClientServer.
func (s *Server) HandleReInitCommit(_ context.Context, r *pb.HandleCommitRequest) (*pb.HandleReInitCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.handleCommit(r)
	if err != nil {
		return nil, err
	}
	return s.closed(m)
}

// ReInitWelcome implements pb.MLSClientServer.
func (s *Server) ReInitWelcome(_ context.Context, r *pb.ReInitWelcomeRequest) (*pb.CreateSubgroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ri, ok := s.reinits[r.ReinitId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no reinit %d", r.ReinitId)
	}
	g, welcome, err := ri.old.g.ReInit(ri.id, r.KeyPackage, &mls.SubgroupOptions{UpdatePath: r.ForcePath, ExternalTree: r.ExternalTree})
	if err != nil {
		return nil, errStatus(err)
	}
	delete(s.reinits, r.ReinitId)
	resp := &pb.CreateSubgroupResponse{StateId: s.addMember(g, ri.id, ri.old.g.PrivateHandshake), Welcome: welcome, EpochAuthenticator: g.EpochAuthenticator()}
	if r.ExternalTree {
		resp.RatchetTree = g.RatchetTree()
	}
	return resp, nil
}

// HandleReInitWelcome implements pb.MLSClientServer.
func (s *Server) HandleReInitWelcome(_ context.Context, r *pb.HandleReInitWelcomeRequest) (*pb.JoinGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ri, ok := s.reinits[r.ReinitId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no reinit %d", r.ReinitId)
	}
	g, err := mls.Join(ri.kp, r.Welcome, acceptBasic, &mls.JoinOptions{RatchetTree: nonEmpty(r.RatchetTree), ResumeFrom: []*mls.Group{ri.old.g}, Now: s.now})
	if err != nil {
		return nil, errStatus(err)
	}
	delete(s.reinits, r.ReinitId)
	return &pb.JoinGroupResponse{StateId: s.addMember(g, ri.id, ri.old.g.PrivateHandshake), EpochAuthenticator: g.EpochAuthenticator()}, nil
}

// CreateBranch implements pb.MLSClientServer.
func (s *Server) CreateBranch(_ context.Context, r *pb.CreateBranchRequest) (*pb.CreateSubgroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	g, welcome, err := m.g.Branch(m.id, r.GroupId, r.KeyPackages, &mls.SubgroupOptions{
		Extensions: extensions(r.Extensions), UpdatePath: r.ForcePath, ExternalTree: r.ExternalTree,
	})
	if err != nil {
		return nil, errStatus(err)
	}
	resp := &pb.CreateSubgroupResponse{StateId: s.addMember(g, m.id, m.g.PrivateHandshake), Welcome: welcome, EpochAuthenticator: g.EpochAuthenticator()}
	if r.ExternalTree {
		resp.RatchetTree = g.RatchetTree()
	}
	return resp, nil
}

// HandleBranch implements pb.MLSClientServer.
func (s *Server) HandleBranch(_ context.Context, r *pb.HandleBranchRequest) (*pb.HandleBranchResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	p, ok := s.pendings[r.TransactionId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no transaction %d", r.TransactionId)
	}
	g, err := mls.Join(p.kp, r.Welcome, acceptBasic, &mls.JoinOptions{RatchetTree: nonEmpty(r.RatchetTree), ResumeFrom: []*mls.Group{m.g}, Now: s.now})
	if err != nil {
		return nil, errStatus(err)
	}
	delete(s.pendings, r.TransactionId)
	return &pb.HandleBranchResponse{StateId: s.addMember(g, p.kp.Identity(), m.g.PrivateHandshake), EpochAuthenticator: g.EpochAuthenticator()}, nil
}

// NewMemberAddProposal implements pb.MLSClientServer.
func (s *Server) NewMemberAddProposal(_ context.Context, r *pb.NewMemberAddProposalRequest) (*pb.NewMemberAddProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, err := mls.Inspect(r.GroupInfo)
	if err != nil {
		return nil, errStatus(err)
	}
	id, err := mls.NewIdentity(info.CipherSuite, r.Identity)
	if err != nil {
		return nil, errStatus(err)
	}
	kp, err := s.newKeyPackage(id)
	if err != nil {
		return nil, errStatus(err)
	}
	msg, err := mls.NewMemberAddProposal(kp, r.GroupInfo)
	if err != nil {
		return nil, errStatus(err)
	}
	n := s.id()
	s.pendings[n] = &pending{kp: kp, psks: map[string][]byte{}}
	initPriv, encPriv := kp.PrivateKeys()
	return &pb.NewMemberAddProposalResponse{TransactionId: n, Proposal: msg, InitPriv: initPriv, EncryptionPriv: encPriv, SignaturePriv: id.SignaturePrivateKey()}, nil
}

// CreateExternalSigner implements pb.MLSClientServer.
func (s *Server) CreateExternalSigner(_ context.Context, r *pb.CreateExternalSignerRequest) (*pb.CreateExternalSignerResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := mls.NewIdentity(mls.CipherSuite(r.CipherSuite), r.Identity)
	if err != nil {
		return nil, errStatus(err)
	}
	n := s.id()
	s.signers[n] = id
	return &pb.CreateExternalSignerResponse{SignerId: n, ExternalSender: id.ExternalSender().Bytes()}, nil
}

// AddExternalSigner implements pb.MLSClientServer: a GroupContextExtensions
// proposal that appends the signer to the group's external_senders and
// keeps the other extensions.
func (s *Server) AddExternalSigner(_ context.Context, r *pb.AddExternalSignerRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.member(r.StateId)
	if err != nil {
		return nil, err
	}
	signer, err := mls.ParseExternalSender(r.ExternalSender)
	if err != nil {
		return nil, errStatus(err)
	}
	senders, err := m.g.ExternalSenders()
	if err != nil {
		return nil, errStatus(err)
	}
	exts := slices.DeleteFunc(m.g.Extensions(), func(e mls.Extension) bool { return e.Type == externalSendersType })
	exts = append(exts, mls.ExternalSendersExtension(append(senders, signer)))
	return s.propose(r.StateId, mls.GroupContextExtensionsProposal(exts))
}

// externalSendersType is the external_senders extension type (RFC 9420,
// Section 17.3).
const externalSendersType = 5

// ExternalSignerProposal implements pb.MLSClientServer: the signer finds
// its index in the GroupInfo's external_senders and signs the proposal
// for the GroupInfo's group and epoch.
func (s *Server) ExternalSignerProposal(_ context.Context, r *pb.ExternalSignerProposalRequest) (*pb.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.signers[r.SignerId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no signer %d", r.SignerId)
	}
	info, err := mls.Inspect(r.GroupInfo)
	if err != nil {
		return nil, errStatus(err)
	}
	index := -1
	for _, e := range info.GroupContextExtensions {
		if e.Type != externalSendersType {
			continue
		}
		senders, err := mls.ParseExternalSendersExtension(e.Data)
		if err != nil {
			return nil, errStatus(err)
		}
		index = slices.IndexFunc(senders, func(x mls.ExternalSender) bool {
			return string(x.SignatureKey) == string(id.SignaturePublicKey())
		})
	}
	if index < 0 {
		return nil, status.Error(codes.FailedPrecondition, "signer is not among the group's external senders")
	}
	d := r.Description
	var p mls.Proposal
	switch string(d.ProposalType) {
	case "add":
		p = mls.AddProposal(d.KeyPackage)
	case "remove":
		leaf, err := leafInTree(r.GroupInfo, r.RatchetTree, d.RemovedId)
		if err != nil {
			return nil, err
		}
		p = mls.RemoveProposal(leaf)
	case "externalPSK":
		p = mls.ExternalPSKProposal(d.PskId)
	case "resumptionPSK":
		p = mls.ResumptionPSKProposal(d.EpochId)
	case "groupContextExtensions":
		p = mls.GroupContextExtensionsProposal(extensions(d.Extensions))
	case "reinit":
		p = mls.ReInitProposal(d.GroupId, mls.CipherSuite(d.CipherSuite), extensions(d.Extensions))
	default:
		return nil, status.Errorf(codes.InvalidArgument, "proposal type %q", d.ProposalType)
	}
	msg, err := id.ProposeExternal(info.GroupID, info.Epoch, uint32(index), p)
	if err != nil {
		return nil, errStatus(err)
	}
	return &pb.ProposalResponse{Proposal: msg}, nil
}

// leafInTree finds the leaf of the member named name in the ratchet tree
// that comes with a GroupInfo (inline or supplied).
func leafInTree(groupInfo, tree, name []byte) (uint32, error) {
	members, err := mls.TreeMembers(groupInfo, nonEmpty(tree))
	if err != nil {
		return 0, errStatus(err)
	}
	for leaf, id := range members {
		if string(id) == string(name) {
			return leaf, nil
		}
	}
	return 0, status.Errorf(codes.InvalidArgument, "no member %q", name)
}

// Free implements pb.MLSClientServer.
func (s *Server) Free(_ context.Context, r *pb.FreeRequest) (*pb.FreeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, r.StateId)
	return &pb.FreeResponse{}, nil
}
