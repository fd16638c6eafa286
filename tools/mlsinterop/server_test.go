package mlsinterop_test

import (
	"context"
	"net"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/tools/mlsinterop"
	pb "github.com/guardyn/guardyn/tools/mlsinterop/mlsclientpb"
)

// Every RPC of the interface is implemented: called with an empty
// request over gRPC, none answers Unimplemented. (Most refuse the empty
// request with NotFound or InvalidArgument.)
func TestNoRPCUnimplemented(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterMLSClientServer(srv, mlsinterop.NewServer(nil))
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	methods := pb.File_mls_client_proto.Services().Get(0).Methods()
	if methods.Len() != 34 {
		t.Fatalf("%d methods in the service", methods.Len())
	}
	for i := range methods.Len() {
		m := methods.Get(i)
		in, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
		if err != nil {
			t.Fatal(err)
		}
		out, err := protoregistry.GlobalTypes.FindMessageByName(m.Output().FullName())
		if err != nil {
			t.Fatal(err)
		}
		err = conn.Invoke(context.Background(), "/mls_client.MLSClient/"+string(m.Name()), in.New().Interface(), out.New().Interface())
		if status.Code(err) == codes.Unimplemented {
			t.Errorf("%s: %v", m.Name(), err)
		}
	}
}

func TestServerBasics(t *testing.T) {
	s := mlsinterop.NewServer(nil)
	ctx := context.Background()
	name, _ := s.Name(ctx, &pb.NameRequest{})
	suites, _ := s.SupportedCiphersuites(ctx, &pb.SupportedCiphersuitesRequest{})
	if name.Name != mlsinterop.Name || !slices.Contains(suites.Ciphersuites, uint32(mls.DefaultCipherSuite)) || len(suites.Ciphersuites) != 8 {
		t.Fatalf("name %q suites %v", name.Name, suites.Ciphersuites)
	}
	if _, err := s.Protect(ctx, &pb.ProtectRequest{StateId: 42}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown state: %v", err)
	}
	g, err := s.CreateGroup(ctx, &pb.CreateGroupRequest{GroupId: []byte("g"), CipherSuite: 1, Identity: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddProposal(ctx, &pb.AddProposalRequest{StateId: g.StateId, KeyPackage: []byte{1, 2, 3}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("malformed key package: %v", err)
	}
	if _, err := s.RemoveProposal(ctx, &pb.RemoveProposalRequest{StateId: g.StateId, RemovedId: []byte("nobody")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("remove of a non-member: %v", err)
	}
	if _, err := s.CreateGroup(ctx, &pb.CreateGroupRequest{GroupId: []byte("g"), CipherSuite: 0x4c, Identity: []byte("a")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unsupported suite: %v", err)
	}
	if _, err := s.Commit(ctx, &pb.CommitRequest{StateId: g.StateId, ByValue: []*pb.ProposalDescription{{ProposalType: []byte("reinit")}}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("reinit by value: %v", err)
	}
	if _, err := s.Free(ctx, &pb.FreeRequest{StateId: g.StateId}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StateAuth(ctx, &pb.StateAuthRequest{StateId: g.StateId}); status.Code(err) != codes.NotFound {
		t.Errorf("freed state: %v", err)
	}
}
