package mlsinterop_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/tools/mlsinterop"
	pb "github.com/guardyn/guardyn/tools/mlsinterop/mlsclientpb"
)

// startEndpoint serves a fresh endpoint on a loopback port and returns a
// client connected to it over real gRPC.
func startEndpoint(t *testing.T) pb.MLSClientClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterMLSClientServer(srv, mlsinterop.NewServer(nil))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewMLSClientClient(conn)
}

// step is one scripted action; raw keeps its parameters.
type step struct {
	Action string `json:"action"`
	Actor  string `json:"actor"`
	raw    json.RawMessage
}

func (s *step) UnmarshalJSON(b []byte) error {
	type plain step
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	s.raw = slices.Clone(b)
	return nil
}

// actors lists a script's actors in order of appearance, joiners and
// external signers included, as the working group's runner counts them.
func actors(script []step) []string {
	var out []string
	add := func(a string) {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, s := range script {
		add(s.Actor)
		var p struct {
			Joiner string `json:"joiner"`
			Signer string `json:"signer"`
		}
		json.Unmarshal(s.raw, &p)
		add(p.Joiner)
		add(p.Signer)
	}
	// Actors named only as members, joiners of a commit or reinit roles
	// run on the endpoint of their position too.
	for _, s := range script {
		var p struct {
			Members   []string `json:"members"`
			Joiners   []string `json:"joiners"`
			Clients   []string `json:"clients"`
			Proposer  string   `json:"proposer"`
			Committer string   `json:"committer"`
			Welcomer  string   `json:"welcomer"`
		}
		json.Unmarshal(s.raw, &p)
		for _, a := range slices.Concat(p.Members, p.Joiners, p.Clients, []string{p.Proposer, p.Committer, p.Welcomer}) {
			add(a)
		}
	}
	return out
}

// run plays the working group's test runner (interop/test-runner) for one
// script, one suite, one handshake mode and one assignment of actors to
// endpoints. It follows the runner's behaviour step by step: which RPCs,
// in which order, and that every member and joiner ends each commit with
// the committer's epoch authenticator.
type run struct {
	t       *testing.T
	ctx     context.Context
	suite   uint32
	encrypt bool
	client  map[string]pb.MLSClientClient
	state   map[string]uint32
	tx      map[string]uint32
	signer  map[string]uint32
	cache   []map[string][]byte
	groupID []byte
}

func (r *run) msg(i int, key string) ([]byte, error) {
	if i < 0 || i >= len(r.cache) {
		return nil, fmt.Errorf("no step %d", i)
	}
	b, ok := r.cache[i][key]
	if !ok {
		return nil, fmt.Errorf("no %s at step %d", key, i)
	}
	return b, nil
}

// proposalDesc is a proposal described by value in a script.
type proposalDesc struct {
	ProposalType      string          `json:"proposalType"`
	KeyPackage        int             `json:"keyPackage"`
	Removed           string          `json:"removed"`
	PskID             int             `json:"pskID"`
	EpochID           uint64          `json:"epochID"`
	Extensions        []*pb.Extension `json:"extensions"`
	ChangeGroupID     bool            `json:"changeGroupID"`
	ChangeCipherSuite bool            `json:"changeCipherSuite"`
}

func (r *run) describe(d proposalDesc) (*pb.ProposalDescription, error) {
	out := &pb.ProposalDescription{ProposalType: []byte(d.ProposalType)}
	var err error
	switch d.ProposalType {
	case "add":
		out.KeyPackage, err = r.msg(d.KeyPackage, "key_package")
	case "remove":
		out.RemovedId = []byte(d.Removed)
	case "externalPSK":
		out.PskId, err = r.msg(d.PskID, "psk_id")
	case "resumptionPSK":
		out.EpochId = d.EpochID
	case "groupContextExtensions":
		out.Extensions = d.Extensions
	case "reinit":
		out.Extensions = d.Extensions
		if d.ChangeCipherSuite {
			r.changeSuite()
		}
		out.CipherSuite = r.suite
		out.GroupId = r.newGroupID(d.ChangeGroupID)
	default:
		err = fmt.Errorf("unknown proposal type %q", d.ProposalType)
	}
	return out, err
}

// changeSuite moves to another suite both endpoints support: the
// post-quantum default, or suite 1 from it.
func (r *run) changeSuite() {
	if r.suite == uint32(mls.DefaultCipherSuite) {
		r.suite = 1
	} else {
		r.suite = uint32(mls.DefaultCipherSuite)
	}
}

func (r *run) newGroupID(change bool) []byte {
	id := slices.Clone(r.groupID)
	if change {
		id = append(id, "++"...)
	}
	return id
}

// commitAll creates a commit at actor, merges it there, has members
// process it and joiners join, all agreeing on the epoch authenticator.
func (r *run) commitAll(i int, actor string, req *pb.CommitRequest, members, joiners []string) error {
	c := r.client[actor]
	req.StateId = r.state[actor]
	resp, err := c.Commit(r.ctx, req)
	if err != nil {
		return fmt.Errorf("Commit at %s: %w", actor, err)
	}
	r.cache[i]["commit"], r.cache[i]["welcome"] = resp.Commit, resp.Welcome
	merged, err := c.HandlePendingCommit(r.ctx, &pb.HandlePendingCommitRequest{StateId: r.state[actor]})
	if err != nil {
		return fmt.Errorf("HandlePendingCommit at %s: %w", actor, err)
	}
	r.state[actor] = merged.StateId
	auth := merged.EpochAuthenticator
	for _, m := range members {
		h, err := r.client[m].HandleCommit(r.ctx, &pb.HandleCommitRequest{StateId: r.state[m], Proposal: req.ByReference, Commit: resp.Commit})
		if err != nil {
			return fmt.Errorf("HandleCommit at %s: %w", m, err)
		}
		if !bytes.Equal(h.EpochAuthenticator, auth) {
			return fmt.Errorf("member %s disagrees on the epoch authenticator", m)
		}
		r.state[m] = h.StateId
	}
	for _, j := range joiners {
		jr := &pb.JoinGroupRequest{TransactionId: r.tx[j], Welcome: resp.Welcome, EncryptHandshake: r.encrypt, Identity: []byte(j)}
		if req.ExternalTree {
			jr.RatchetTree = resp.RatchetTree
		}
		h, err := r.client[j].JoinGroup(r.ctx, jr)
		if err != nil {
			return fmt.Errorf("JoinGroup at %s: %w", j, err)
		}
		if !bytes.Equal(h.EpochAuthenticator, auth) {
			return fmt.Errorf("joiner %s disagrees on the epoch authenticator", j)
		}
		r.state[j] = h.StateId
	}
	return nil
}

func (r *run) keyPackage(i int, actor string) ([]byte, error) {
	resp, err := r.client[actor].CreateKeyPackage(r.ctx, &pb.CreateKeyPackageRequest{CipherSuite: r.suite, Identity: []byte(actor)})
	if err != nil {
		return nil, fmt.Errorf("CreateKeyPackage at %s: %w", actor, err)
	}
	r.tx[actor] = resp.TransactionId
	if i >= 0 {
		r.cache[i]["key_package"] = resp.KeyPackage
	}
	return resp.KeyPackage, nil
}

func (r *run) step(i int, s step) error {
	var p struct {
		Members                []string        `json:"members"`
		Joiners                []string        `json:"joiners"`
		Clients                []string        `json:"clients"`
		KeyPackage             int             `json:"keyPackage"`
		Removed                string          `json:"removed"`
		PskID                  int             `json:"pskID"`
		EpochID                uint64          `json:"epochID"`
		Extensions             []*pb.Extension `json:"extensions"`
		ByReference            []int           `json:"byReference"`
		ByValue                []proposalDesc  `json:"byValue"`
		ForcePathSnake         bool            `json:"force_path"`
		ExternalTreeSnake      bool            `json:"external_tree"`
		ForcePath              bool            `json:"forcePath"`
		ExternalTree           bool            `json:"externalTree"`
		AuthenticatedData      string          `json:"authenticatedData"`
		Plaintext              string          `json:"plaintext"`
		Ciphertext             int             `json:"ciphertext"`
		Joiner                 string          `json:"joiner"`
		RemovePrior            bool            `json:"removePrior"`
		PSKs                   []int           `json:"psks"`
		Proposer               string          `json:"proposer"`
		Committer              string          `json:"committer"`
		Welcomer               string          `json:"welcomer"`
		ChangeCipherSuite      bool            `json:"changeCipherSuite"`
		ChangeGroupID          bool            `json:"changeGroupID"`
		ExternalReinitProposal int             `json:"externalReinitProposal"`
		Signer                 string          `json:"signer"`
		Member                 string          `json:"member"`
		Description            proposalDesc    `json:"description"`
	}
	if err := json.Unmarshal(s.raw, &p); err != nil {
		return err
	}
	c := r.client[s.Actor]
	ctx := r.ctx
	propose := func(resp *pb.ProposalResponse, err error) error {
		if err != nil {
			return fmt.Errorf("%s at %s: %w", s.Action, s.Actor, err)
		}
		r.cache[i]["proposal"] = resp.Proposal
		return nil
	}
	switch s.Action {
	case "createGroup":
		r.groupID = []byte(fmt.Sprintf("group-%x", randomBytes(8)))
		resp, err := c.CreateGroup(ctx, &pb.CreateGroupRequest{GroupId: r.groupID, CipherSuite: r.suite, EncryptHandshake: r.encrypt, Identity: []byte(s.Actor)})
		if err != nil {
			return fmt.Errorf("CreateGroup: %w", err)
		}
		r.state[s.Actor] = resp.StateId
		r.cache[i]["group_id"] = r.groupID
		if len(p.Members) == 0 {
			return nil
		}
		req := &pb.CommitRequest{}
		for _, m := range p.Members {
			kp, err := r.keyPackage(-1, m)
			if err != nil {
				return err
			}
			req.ByValue = append(req.ByValue, &pb.ProposalDescription{ProposalType: []byte("add"), KeyPackage: kp})
		}
		return r.commitAll(i, s.Actor, req, nil, p.Members)
	case "createKeyPackage":
		_, err := r.keyPackage(i, s.Actor)
		return err
	case "installExternalPSK":
		id, secret := randomBytes(32), randomBytes(32)
		r.cache[i]["psk_id"], r.cache[i]["psk_secret"] = id, secret
		for _, name := range p.Clients {
			target, ok := r.state[name]
			if !ok {
				target = r.tx[name]
			}
			if _, err := r.client[name].StorePSK(ctx, &pb.StorePSKRequest{StateOrTransactionId: target, PskId: id, PskSecret: secret}); err != nil {
				return fmt.Errorf("StorePSK at %s: %w", name, err)
			}
		}
	case "addProposal":
		kp, err := r.msg(p.KeyPackage, "key_package")
		if err != nil {
			return err
		}
		return propose(c.AddProposal(ctx, &pb.AddProposalRequest{StateId: r.state[s.Actor], KeyPackage: kp}))
	case "updateProposal":
		return propose(c.UpdateProposal(ctx, &pb.UpdateProposalRequest{StateId: r.state[s.Actor]}))
	case "removeProposal":
		return propose(c.RemoveProposal(ctx, &pb.RemoveProposalRequest{StateId: r.state[s.Actor], RemovedId: []byte(p.Removed)}))
	case "externalPSKProposal":
		id, err := r.msg(p.PskID, "psk_id")
		if err != nil {
			return err
		}
		return propose(c.ExternalPSKProposal(ctx, &pb.ExternalPSKProposalRequest{StateId: r.state[s.Actor], PskId: id}))
	case "resumptionPSKProposal":
		return propose(c.ResumptionPSKProposal(ctx, &pb.ResumptionPSKProposalRequest{StateId: r.state[s.Actor], EpochId: p.EpochID}))
	case "groupContextExtensionsProposal":
		return propose(c.GroupContextExtensionsProposal(ctx, &pb.GroupContextExtensionsProposalRequest{StateId: r.state[s.Actor], Extensions: p.Extensions}))
	case "fullCommit":
		req := &pb.CommitRequest{ForcePath: p.ForcePathSnake, ExternalTree: p.ExternalTreeSnake}
		for _, ix := range p.ByReference {
			b, err := r.msg(ix, "proposal")
			if err != nil {
				return err
			}
			req.ByReference = append(req.ByReference, b)
		}
		for _, d := range p.ByValue {
			desc, err := r.describe(d)
			if err != nil {
				return err
			}
			req.ByValue = append(req.ByValue, desc)
		}
		return r.commitAll(i, s.Actor, req, p.Members, p.Joiners)
	case "protect":
		resp, err := c.Protect(ctx, &pb.ProtectRequest{StateId: r.state[s.Actor], AuthenticatedData: []byte(p.AuthenticatedData), Plaintext: []byte(p.Plaintext)})
		if err != nil {
			return fmt.Errorf("Protect: %w", err)
		}
		r.cache[i]["ciphertext"], r.cache[i]["authenticatedData"], r.cache[i]["plaintext"] = resp.Ciphertext, []byte(p.AuthenticatedData), []byte(p.Plaintext)
	case "unprotect":
		ct, err := r.msg(p.Ciphertext, "ciphertext")
		if err != nil {
			return err
		}
		resp, err := c.Unprotect(ctx, &pb.UnprotectRequest{StateId: r.state[s.Actor], Ciphertext: ct})
		if err != nil {
			return fmt.Errorf("Unprotect: %w", err)
		}
		if !bytes.Equal(resp.Plaintext, r.cache[p.Ciphertext]["plaintext"]) || !bytes.Equal(resp.AuthenticatedData, r.cache[p.Ciphertext]["authenticatedData"]) {
			return fmt.Errorf("unprotect returned %q / %q", resp.Plaintext, resp.AuthenticatedData)
		}
	case "externalJoin":
		gi, err := c.GroupInfo(ctx, &pb.GroupInfoRequest{StateId: r.state[s.Actor], ExternalTree: p.ExternalTree})
		if err != nil {
			return fmt.Errorf("GroupInfo: %w", err)
		}
		req := &pb.ExternalJoinRequest{GroupInfo: gi.GroupInfo, RatchetTree: gi.RatchetTree, EncryptHandshake: r.encrypt, Identity: []byte(p.Joiner), RemovePrior: p.RemovePrior}
		for _, ix := range p.PSKs {
			id, err := r.msg(ix, "psk_id")
			if err != nil {
				return err
			}
			req.Psks = append(req.Psks, &pb.PreSharedKey{PskId: id, PskSecret: r.cache[ix]["psk_secret"]})
		}
		resp, err := r.client[p.Joiner].ExternalJoin(ctx, req)
		if err != nil {
			return fmt.Errorf("ExternalJoin at %s: %w", p.Joiner, err)
		}
		r.state[p.Joiner] = resp.StateId
		for _, m := range append(p.Members, s.Actor) {
			h, err := r.client[m].HandleCommit(ctx, &pb.HandleCommitRequest{StateId: r.state[m], Commit: resp.Commit})
			if err != nil {
				return fmt.Errorf("HandleCommit at %s: %w", m, err)
			}
			if !bytes.Equal(h.EpochAuthenticator, resp.EpochAuthenticator) {
				return fmt.Errorf("member %s disagrees with the external joiner", m)
			}
			r.state[m] = h.StateId
		}
	case "reinit":
		return r.reinit(p.Proposer, p.Committer, p.Welcomer, p.Members, p.ChangeCipherSuite, p.ChangeGroupID, p.Extensions, p.ForcePath, p.ExternalTree, p.ExternalReinitProposal)
	case "branch":
		tx := map[string]uint32{}
		var kps [][]byte
		for _, m := range p.Members {
			kp, err := r.keyPackage(-1, m)
			if err != nil {
				return err
			}
			tx[m] = r.tx[m]
			kps = append(kps, kp)
		}
		// The snapshot's runner reads force_path and external_tree here.
		resp, err := c.CreateBranch(ctx, &pb.CreateBranchRequest{StateId: r.state[s.Actor], GroupId: []byte(fmt.Sprintf("branch-%x", randomBytes(8))),
			Extensions: p.Extensions, KeyPackages: kps, ForcePath: p.ForcePathSnake, ExternalTree: p.ExternalTreeSnake})
		if err != nil {
			return fmt.Errorf("CreateBranch: %w", err)
		}
		r.state[s.Actor] = resp.StateId
		for _, m := range p.Members {
			h, err := r.client[m].HandleBranch(ctx, &pb.HandleBranchRequest{StateId: r.state[m], TransactionId: tx[m], Welcome: resp.Welcome, RatchetTree: resp.RatchetTree})
			if err != nil {
				return fmt.Errorf("HandleBranch at %s: %w", m, err)
			}
			if !bytes.Equal(h.EpochAuthenticator, resp.EpochAuthenticator) {
				return fmt.Errorf("branch member %s disagrees", m)
			}
			r.state[m] = h.StateId
		}
	case "newMemberAddProposal":
		gi, err := c.GroupInfo(ctx, &pb.GroupInfoRequest{StateId: r.state[s.Actor]})
		if err != nil {
			return fmt.Errorf("GroupInfo: %w", err)
		}
		resp, err := r.client[p.Joiner].NewMemberAddProposal(ctx, &pb.NewMemberAddProposalRequest{GroupInfo: gi.GroupInfo, Identity: []byte(p.Joiner)})
		if err != nil {
			return fmt.Errorf("NewMemberAddProposal: %w", err)
		}
		r.tx[p.Joiner] = resp.TransactionId
		r.cache[i]["proposal"] = resp.Proposal
	case "addExternalSigner":
		sg, err := r.client[p.Signer].CreateExternalSigner(ctx, &pb.CreateExternalSignerRequest{CipherSuite: r.suite, Identity: []byte(p.Signer)})
		if err != nil {
			return fmt.Errorf("CreateExternalSigner: %w", err)
		}
		r.signer[p.Signer] = sg.SignerId
		return propose(c.AddExternalSigner(ctx, &pb.AddExternalSignerRequest{StateId: r.state[s.Actor], ExternalSender: sg.ExternalSender}))
	case "externalSignerProposal":
		gi, err := r.client[p.Member].GroupInfo(ctx, &pb.GroupInfoRequest{StateId: r.state[p.Member], ExternalTree: true})
		if err != nil {
			return fmt.Errorf("GroupInfo: %w", err)
		}
		desc, err := r.describe(p.Description)
		if err != nil {
			return err
		}
		return propose(c.ExternalSignerProposal(ctx, &pb.ExternalSignerProposalRequest{SignerId: r.signer[s.Actor], GroupInfo: gi.GroupInfo, RatchetTree: gi.RatchetTree, Description: desc}))
	default:
		return fmt.Errorf("unknown action %q", s.Action)
	}
	return nil
}

func (r *run) reinit(proposer, committer, welcomer string, members []string, changeSuite, changeID bool, exts []*pb.Extension, forcePath, externalTree bool, external int) error {
	ctx := r.ctx
	notCommitter := []string{}
	notWelcomer := []string{}
	for _, m := range slices.Concat([]string{welcomer, committer}, members, []string{proposer}) {
		if m == "" {
			continue
		}
		if m != committer && !slices.Contains(notCommitter, m) {
			notCommitter = append(notCommitter, m)
		}
		if m != welcomer && !slices.Contains(notWelcomer, m) {
			notWelcomer = append(notWelcomer, m)
		}
	}
	var proposal []byte
	if proposer != "" {
		newID := r.newGroupID(changeID)
		if changeSuite {
			r.changeSuite()
		}
		resp, err := r.client[proposer].ReInitProposal(ctx, &pb.ReInitProposalRequest{StateId: r.state[proposer], CipherSuite: r.suite, GroupId: newID, Extensions: exts})
		if err != nil {
			return fmt.Errorf("ReInitProposal: %w", err)
		}
		proposal = resp.Proposal
	} else {
		var err error
		if proposal, err = r.msg(external, "proposal"); err != nil {
			return err
		}
	}
	cresp, err := r.client[committer].ReInitCommit(ctx, &pb.CommitRequest{StateId: r.state[committer], ByReference: [][]byte{proposal}})
	if err != nil {
		return fmt.Errorf("ReInitCommit: %w", err)
	}
	ids, kps := map[string]uint32{}, map[string][]byte{}
	h, err := r.client[committer].HandlePendingReInitCommit(ctx, &pb.HandlePendingCommitRequest{StateId: r.state[committer]})
	if err != nil {
		return fmt.Errorf("HandlePendingReInitCommit: %w", err)
	}
	ids[committer], kps[committer] = h.ReinitId, h.KeyPackage
	auth := h.EpochAuthenticator
	for _, m := range notCommitter {
		h, err := r.client[m].HandleReInitCommit(ctx, &pb.HandleCommitRequest{StateId: r.state[m], Proposal: [][]byte{proposal}, Commit: cresp.Commit})
		if err != nil {
			return fmt.Errorf("HandleReInitCommit at %s: %w", m, err)
		}
		if !bytes.Equal(h.EpochAuthenticator, auth) {
			return fmt.Errorf("member %s disagrees on the reinit epoch", m)
		}
		ids[m], kps[m] = h.ReinitId, h.KeyPackage
	}
	var list [][]byte
	for _, m := range notWelcomer {
		list = append(list, kps[m])
	}
	w, err := r.client[welcomer].ReInitWelcome(ctx, &pb.ReInitWelcomeRequest{ReinitId: ids[welcomer], KeyPackage: list, ForcePath: forcePath, ExternalTree: externalTree})
	if err != nil {
		return fmt.Errorf("ReInitWelcome: %w", err)
	}
	r.state[welcomer] = w.StateId
	for _, m := range notWelcomer {
		j, err := r.client[m].HandleReInitWelcome(ctx, &pb.HandleReInitWelcomeRequest{ReinitId: ids[m], Welcome: w.Welcome, RatchetTree: w.RatchetTree})
		if err != nil {
			return fmt.Errorf("HandleReInitWelcome at %s: %w", m, err)
		}
		if !bytes.Equal(j.EpochAuthenticator, w.EpochAuthenticator) {
			return fmt.Errorf("member %s disagrees on the new group", m)
		}
		r.state[m] = j.StateId
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// runScript runs script with actors assigned to endpoints by assign.
func runScript(ctx context.Context, t *testing.T, endpoints []pb.MLSClientClient, script []step, suite uint32, encrypt bool, assign func(int) int) error {
	r := &run{t: t, ctx: ctx, suite: suite, encrypt: encrypt, client: map[string]pb.MLSClientClient{},
		state: map[string]uint32{}, tx: map[string]uint32{}, signer: map[string]uint32{}, cache: make([]map[string][]byte, len(script))}
	for i := range r.cache {
		r.cache[i] = map[string][]byte{}
	}
	for i, a := range actors(script) {
		r.client[a] = endpoints[assign(i)]
	}
	for i, s := range script {
		if err := r.step(i, s); err != nil {
			return fmt.Errorf("step %d (%s): %w", i, s.Action, err)
		}
	}
	return nil
}

// full runs the whole matrix: every script in every suite, public and
// private, with both assignments of actors to the endpoints.
var full = flag.Bool("mlsinterop.full", false, "run every script in every suite with both actor assignments")

// TestScenarios drives two endpoint instances over real gRPC on loopback
// through every scenario script of the working group's welcome_join,
// application, commit, external_join, external_proposals, reinit and branch
// configs, with public and private handshakes, actors assigned alternately
// to the two endpoints and the other way round (so every role is played by
// both). By default each script runs four times: in the X-Wing suite and in
// one classical suite, rotating through suites 1 to 7 so that every suite
// runs several scripts, each suite with both handshake modes and both
// assignments; -mlsinterop.full runs every script in every suite with
// every mode and assignment (1248 runs, about 4 minutes here).
func TestScenarios(t *testing.T) {
	endpoints := []pb.MLSClientClient{startEndpoint(t), startEndpoint(t)}
	// Parallel subtests run after this function returns: cancel at cleanup.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	t.Cleanup(cancel)
	names, err := filepath.Glob("testdata/*.json")
	if err != nil || len(names) != 7 {
		t.Fatalf("scenario configs: %v %v", names, err)
	}
	suites := mls.CipherSuites()
	alternate, opposite := func(i int) int { return i % 2 }, func(i int) int { return (i + 1) % 2 }
	var runs atomic.Int64
	n := 0
	t.Cleanup(func() { t.Logf("%d script runs", runs.Load()) })
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var config struct {
			Scripts map[string][]step `json:"scripts"`
		}
		if err := json.Unmarshal(b, &config); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, scriptName := range slices.Sorted(maps.Keys(config.Scripts)) {
			script := config.Scripts[scriptName]
			classical := suites[n%(len(suites)-1)]
			n++
			t.Run(filepath.Base(name)+"/"+scriptName, func(t *testing.T) {
				t.Parallel()
				type plan struct {
					cs      mls.CipherSuite
					assign  func(int) int
					encrypt bool
				}
				// Each suite runs with both handshake modes and both
				// assignments, two of the four combinations each.
				plans := []plan{
					{mls.DefaultCipherSuite, alternate, false}, {mls.DefaultCipherSuite, opposite, true},
					{classical, alternate, true}, {classical, opposite, false},
				}
				if *full {
					plans = nil
					for _, cs := range suites {
						for _, encrypt := range []bool{false, true} {
							plans = append(plans, plan{cs, alternate, encrypt}, plan{cs, opposite, encrypt})
						}
					}
				}
				for _, p := range plans {
					if err := runScript(ctx, t, endpoints, script, uint32(p.cs), p.encrypt, p.assign); err != nil {
						t.Errorf("suite %d, private %v: %v", p.cs, p.encrypt, err)
					}
					runs.Add(1)
				}
			})
		}
	}
}
