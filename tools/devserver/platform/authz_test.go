package platform_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/services/auth"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// nopProvider accepts every push and sends nothing, for tests that register targets of a
// platform the test platform has no credentials for.
type nopProvider struct{}

func (nopProvider) Push(context.Context, *notificationv1.RegisterPushTargetRequest) error { return nil }

// rpc is one method of the API with a plausible request.
type rpc struct {
	method string
	public bool
	call   func(ctx context.Context) error
}

// firstErr returns the error of a server stream's first receive.
func firstErr[T any](recv func() (T, error)) error {
	_, err := recv()
	if err == io.EOF {
		return nil
	}
	return err
}

// TestAuthorizationTable calls every RPC of every service with no token, an expired
// token and a removed device's token, then checks what another user's valid token can
// reach.
func TestAuthorizationTable(t *testing.T) {
	e := startWith(t, func(c *platform.Config) { c.FCM = nopProvider{} })
	alice, mallory := e.register(t, "alice"), e.register(t, "mallory")
	alice2 := e.link(t, alice)
	removed := e.link(t, alice)
	must(e.auth.RemoveDevice(alice.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: removed.ID}))

	// An expired but correctly signed token for alice, from the platform's own key.
	seed := must(os.ReadFile(filepath.Join(e.dir, "keys", "token.key")))
	past := func() time.Time { return time.Now().Add(-time.Hour) }
	issuer := must(authn.NewIssuer(ed25519.NewKeyFromSeed(seed), 15*time.Minute, past))
	expired, _, err := issuer.Issue(alice.UserID, alice.ID, [16]byte{1})
	if err != nil {
		t.Fatal(err)
	}

	gid := clientID()
	addr := func(d *device) *commonv1.DeviceAddress {
		return &commonv1.DeviceAddress{UserId: d.UserID, DeviceId: d.ID}
	}
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: []*commonv1.DeviceAddress{addr(alice), addr(alice2)}, GroupInfo: []byte("gi")}))
	a, m := e.auth, e.msg
	md := mediav1.NewMediaServiceClient(e.conn)
	blob := uploadBlob(t, md, alice, []byte("alice's ciphertext"))
	aliceCap := must(md.CreateCapability(alice.ctx(t), &mediav1.CreateCapabilityRequest{BlobId: blob, Ttl: durationpb.New(time.Hour), AudienceUserId: alice2.UserID})).GetCapability()
	rpcs := []rpc{
		{authv1.AuthService_Register_FullMethodName, true, func(ctx context.Context) error {
			_, err := a.Register(ctx, &authv1.RegisterRequest{Username: "x"})
			return err
		}},
		{authv1.AuthService_GetLoginChallenge_FullMethodName, true, func(ctx context.Context) error {
			_, err := a.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "alice", DeviceId: 1})
			return err
		}},
		{authv1.AuthService_Login_FullMethodName, true, func(ctx context.Context) error {
			_, err := a.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1})
			return err
		}},
		{authv1.AuthService_RefreshToken_FullMethodName, true, func(ctx context.Context) error {
			_, err := a.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: "x"})
			return err
		}},
		{authv1.AuthService_ListDevices_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.ListDevices(ctx, &authv1.ListDevicesRequest{})
			return err
		}},
		{authv1.AuthService_StartDeviceLink_FullMethodName, true, func(ctx context.Context) error {
			_, err := a.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: "alice"})
			return err
		}},
		{authv1.AuthService_ListPendingDeviceLinks_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.ListPendingDeviceLinks(ctx, &authv1.ListPendingDeviceLinksRequest{})
			return err
		}},
		{authv1.AuthService_ApproveDeviceLink_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.ApproveDeviceLink(ctx, &authv1.ApproveDeviceLinkRequest{LinkId: "x"})
			return err
		}},
		{authv1.AuthService_RejectDeviceLink_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.RejectDeviceLink(ctx, &authv1.RejectDeviceLinkRequest{LinkId: "x"})
			return err
		}},
		{authv1.AuthService_GetDeviceLinkStatus_FullMethodName, true, func(ctx context.Context) error {
			_, err := a.GetDeviceLinkStatus(ctx, &authv1.GetDeviceLinkStatusRequest{LinkId: "x"})
			return err
		}},
		{authv1.AuthService_RemoveDevice_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.RemoveDevice(ctx, &authv1.RemoveDeviceRequest{DeviceId: 2})
			return err
		}},
		{authv1.AuthService_DeleteAccount_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.DeleteAccount(ctx, &authv1.DeleteAccountRequest{ConfirmUsername: "alice"})
			return err
		}},
		{authv1.AuthService_ExportAccountData_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.ExportAccountData(ctx, &authv1.ExportAccountDataRequest{})
			return err
		}},
		{authv1.AuthService_UploadPreKeys_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.UploadPreKeys(ctx, &authv1.UploadPreKeysRequest{})
			return err
		}},
		{authv1.AuthService_GetPreKeyCounts_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.GetPreKeyCounts(ctx, &authv1.GetPreKeyCountsRequest{})
			return err
		}},
		{authv1.AuthService_GetKeyBundles_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.GetKeyBundles(ctx, &authv1.GetKeyBundlesRequest{UserId: alice.UserID})
			return err
		}},
		{authv1.AuthService_UploadKeyPackages_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.UploadKeyPackages(ctx, &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{[]byte("kp")}})
			return err
		}},
		{authv1.AuthService_ClaimKeyPackages_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.ClaimKeyPackages(ctx, &authv1.ClaimKeyPackagesRequest{UserId: alice.UserID})
			return err
		}},
		{authv1.AuthService_CountKeyPackages_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.CountKeyPackages(ctx, &authv1.CountKeyPackagesRequest{})
			return err
		}},
		{authv1.AuthService_LookupIdentity_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.LookupIdentity(ctx, &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: "alice"}})
			return err
		}},
		{authv1.AuthService_GetSenderCertificate_FullMethodName, false, func(ctx context.Context) error {
			_, err := a.GetSenderCertificate(ctx, &authv1.GetSenderCertificateRequest{})
			return err
		}},
		{authv1.AuthService_GetTrustRoot_FullMethodName, true, func(ctx context.Context) error {
			_, err := a.GetTrustRoot(ctx, &authv1.GetTrustRootRequest{})
			return err
		}},
		{messagingv1.MessagingService_SendMessage_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.SendMessage(ctx, &messagingv1.SendMessageRequest{RecipientUserId: alice.UserID, ClientMessageId: clientID(),
				Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: []byte("x")}, {DeviceId: alice2.ID, SealedEnvelope: []byte("x")}}})
			return err
		}},
		{messagingv1.MessagingService_SendStream_FullMethodName, false, func(ctx context.Context) error {
			s, err := m.SendStream(ctx)
			if err != nil {
				return err
			}
			s.CloseSend()
			return firstErr(s.Recv)
		}},
		{messagingv1.MessagingService_SendEphemeral_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.SendEphemeral(ctx, &messagingv1.SendEphemeralRequest{RecipientUserId: alice.UserID,
				Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: []byte("x")}, {DeviceId: alice2.ID, SealedEnvelope: []byte("x")}}})
			return err
		}},
		{messagingv1.MessagingService_Receive_FullMethodName, false, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			s, err := m.Receive(ctx)
			if err != nil {
				return err
			}
			return firstErr(s.Recv)
		}},
		{messagingv1.MessagingService_Subscribe_FullMethodName, false, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			s, err := m.Subscribe(ctx, &messagingv1.SubscribeRequest{})
			if err != nil {
				return err
			}
			return firstErr(s.Recv)
		}},
		{messagingv1.MessagingService_AckMessages_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.AckMessages(ctx, &messagingv1.AckMessagesRequest{})
			return err
		}},
		{messagingv1.MessagingService_CreateGroup_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.CreateGroup(ctx, &messagingv1.CreateGroupRequest{GroupId: clientID(), Members: []*commonv1.DeviceAddress{addr(alice)}})
			return err
		}},
		{messagingv1.MessagingService_SubmitCommit_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.SubmitCommit(ctx, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g")})
			return err
		}},
		{messagingv1.MessagingService_SubmitProposal_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.SubmitProposal(ctx, &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: []byte("p")})
			return err
		}},
		{messagingv1.MessagingService_SendGroupMessage_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.SendGroupMessage(ctx, &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 0), ClientMessageId: clientID()})
			return err
		}},
		{messagingv1.MessagingService_FetchWelcome_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.FetchWelcome(ctx, &messagingv1.FetchWelcomeRequest{GroupId: gid})
			return err
		}},
		{messagingv1.MessagingService_GetGroupInfo_FullMethodName, false, func(ctx context.Context) error {
			_, err := m.GetGroupInfo(ctx, &messagingv1.GetGroupInfoRequest{GroupId: gid})
			return err
		}},
		{mediav1.MediaService_CreateUpload_FullMethodName, false, func(ctx context.Context) error {
			_, err := md.CreateUpload(ctx, &mediav1.CreateUploadRequest{TotalSize: 10, ChunkSize: 10})
			return err
		}},
		{mediav1.MediaService_UploadChunks_FullMethodName, false, func(ctx context.Context) error {
			s, err := md.UploadChunks(ctx)
			if err != nil {
				return err
			}
			s.Send(&mediav1.UploadChunksRequest{UploadId: "x", Data: []byte("x")})
			_, err = s.CloseAndRecv()
			return err
		}},
		{mediav1.MediaService_UploadChunk_FullMethodName, false, func(ctx context.Context) error {
			_, err := md.UploadChunk(ctx, &mediav1.UploadChunkRequest{UploadId: "x", Data: []byte("x")})
			return err
		}},
		{mediav1.MediaService_GetUploadStatus_FullMethodName, false, func(ctx context.Context) error {
			_, err := md.GetUploadStatus(ctx, &mediav1.GetUploadStatusRequest{UploadId: "x"})
			return err
		}},
		{mediav1.MediaService_CompleteUpload_FullMethodName, false, func(ctx context.Context) error {
			_, err := md.CompleteUpload(ctx, &mediav1.CompleteUploadRequest{UploadId: "x", Sha256: make([]byte, 32)})
			return err
		}},
		{mediav1.MediaService_Download_FullMethodName, false, func(ctx context.Context) error {
			s, err := md.Download(ctx, &mediav1.DownloadRequest{BlobId: blob})
			if err != nil {
				return err
			}
			return firstErr(s.Recv)
		}},
		{mediav1.MediaService_DeleteBlob_FullMethodName, false, func(ctx context.Context) error {
			_, err := md.DeleteBlob(ctx, &mediav1.DeleteBlobRequest{BlobId: blob})
			return err
		}},
		{mediav1.MediaService_CreateCapability_FullMethodName, false, func(ctx context.Context) error {
			_, err := md.CreateCapability(ctx, &mediav1.CreateCapabilityRequest{BlobId: blob, Ttl: durationpb.New(time.Hour)})
			return err
		}},
		{mediav1.MediaService_RevokeCapability_FullMethodName, false, func(ctx context.Context) error {
			_, err := md.RevokeCapability(ctx, &mediav1.RevokeCapabilityRequest{Capability: aliceCap})
			return err
		}},
	}
	pr, pu := e.pres, e.push
	rpcs = append(rpcs,
		rpc{presencev1.PresenceService_SetStatus_FullMethodName, false, func(ctx context.Context) error {
			_, err := pr.SetStatus(ctx, &presencev1.SetStatusRequest{Status: presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE})
			return err
		}},
		rpc{presencev1.PresenceService_Heartbeat_FullMethodName, false, func(ctx context.Context) error {
			_, err := pr.Heartbeat(ctx, &presencev1.HeartbeatRequest{})
			return err
		}},
		rpc{presencev1.PresenceService_WatchPresence_FullMethodName, false, func(ctx context.Context) error {
			s, err := pr.WatchPresence(ctx, &presencev1.WatchPresenceRequest{UserIds: []string{alice.UserID}})
			if err != nil {
				return err
			}
			return firstErr(s.Recv)
		}},
		rpc{presencev1.PresenceService_GetLastSeen_FullMethodName, false, func(ctx context.Context) error {
			_, err := pr.GetLastSeen(ctx, &presencev1.GetLastSeenRequest{UserIds: []string{alice.UserID}})
			return err
		}},
		rpc{presencev1.PresenceService_SetPresencePrivacy_FullMethodName, false, func(ctx context.Context) error {
			_, err := pr.SetPresencePrivacy(ctx, &presencev1.SetPresencePrivacyRequest{Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE})
			return err
		}},
		rpc{presencev1.PresenceService_GetPresencePrivacy_FullMethodName, false, func(ctx context.Context) error {
			_, err := pr.GetPresencePrivacy(ctx, &presencev1.GetPresencePrivacyRequest{})
			return err
		}},
		rpc{notificationv1.NotificationService_RegisterPushTarget_FullMethodName, false, func(ctx context.Context) error {
			_, err := pu.RegisterPushTarget(ctx, &notificationv1.RegisterPushTargetRequest{})
			return err
		}},
		rpc{notificationv1.NotificationService_UnregisterPushTarget_FullMethodName, false, func(ctx context.Context) error {
			_, err := pu.UnregisterPushTarget(ctx, &notificationv1.UnregisterPushTargetRequest{})
			return err
		}},
		rpc{notificationv1.NotificationService_ListPushTargets_FullMethodName, false, func(ctx context.Context) error {
			_, err := pu.ListPushTargets(ctx, &notificationv1.ListPushTargetsRequest{})
			return err
		}},
	)

	// The table must name every method the services expose.
	var want, got []string
	for _, sd := range []struct {
		name    string
		methods []string
	}{
		{authv1.AuthService_ServiceDesc.ServiceName, methodNames(authv1.AuthService_ServiceDesc.Methods, authv1.AuthService_ServiceDesc.Streams)},
		{messagingv1.MessagingService_ServiceDesc.ServiceName, methodNames(messagingv1.MessagingService_ServiceDesc.Methods, messagingv1.MessagingService_ServiceDesc.Streams)},
		{presencev1.PresenceService_ServiceDesc.ServiceName, methodNames(presencev1.PresenceService_ServiceDesc.Methods, presencev1.PresenceService_ServiceDesc.Streams)},
		{notificationv1.NotificationService_ServiceDesc.ServiceName, methodNames(notificationv1.NotificationService_ServiceDesc.Methods, notificationv1.NotificationService_ServiceDesc.Streams)},
		{mediav1.MediaService_ServiceDesc.ServiceName, methodNames(mediav1.MediaService_ServiceDesc.Methods, mediav1.MediaService_ServiceDesc.Streams)},
	} {
		for _, m := range sd.methods {
			want = append(want, "/"+sd.name+"/"+m)
		}
	}
	for _, r := range rpcs {
		got = append(got, r.method)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("authorization table covers %v,\nservices expose %v", got, want)
	}

	bearer := func(token string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	bad := []struct {
		name   string
		ctx    func() context.Context
		reason string
	}{
		{"no token", func() context.Context { return context.Background() }, authn.ReasonTokenMissing},
		{"expired token", func() context.Context { return bearer(expired) }, authn.ReasonTokenExpired},
		{"forged token", func() context.Context { return bearer(expired[:len(expired)-4] + "AAAA") }, authn.ReasonTokenInvalid},
		{"removed device", func() context.Context { return bearer(removed.Tokens.GetAccessToken()) }, "DEVICE_REMOVED"},
	}
	for _, r := range rpcs {
		for _, b := range bad {
			t.Run(r.method+"/"+b.name, func(t *testing.T) {
				err := r.call(b.ctx())
				if r.public {
					if status.Code(err) == codes.Unauthenticated && server.Reason(err) == b.reason {
						t.Fatalf("public method rejected for its token: %v", err)
					}
					return
				}
				if status.Code(err) != codes.Unauthenticated || server.Reason(err) != b.reason {
					t.Fatalf("got %v (reason %q), want Unauthenticated/%s", err, server.Reason(err), b.reason)
				}
			})
		}
	}

	t.Run("other user's token", func(t *testing.T) { otherUser(t, e, alice, alice2, mallory, gid) })
	t.Run("other user's media", func(t *testing.T) { otherUserMedia(t, md, alice, alice2, mallory, blob, aliceCap) })
}

// uploadBlob stores body as a blob of d and returns its id.
func uploadBlob(t *testing.T, md mediav1.MediaServiceClient, d *device, body []byte) string {
	t.Helper()
	up := must(md.CreateUpload(d.ctx(t), &mediav1.CreateUploadRequest{TotalSize: uint64(len(body)), ChunkSize: 1 << 20}))
	s := must(md.UploadChunks(d.ctx(t)))
	if err := s.Send(&mediav1.UploadChunksRequest{UploadId: up.GetUploadId(), Data: body}); err != nil {
		t.Fatal(err)
	}
	must(s.CloseAndRecv())
	sum := sha256.Sum256(body)
	return must(md.CompleteUpload(d.ctx(t), &mediav1.CompleteUploadRequest{UploadId: up.GetUploadId(), Sha256: sum[:]})).GetBlobId()
}

// otherUserMedia checks what mallory's valid token reaches of alice's media: nothing, not
// even with a capability made out to alice's other device's account.
func otherUserMedia(t *testing.T, md mediav1.MediaServiceClient, alice, alice2, mallory *device, blob string, aliceCap []byte) {
	up := must(md.CreateUpload(alice.ctx(t), &mediav1.CreateUploadRequest{TotalSize: 10, ChunkSize: 10}))
	_, err := md.GetUploadStatus(mallory.ctx(t), &mediav1.GetUploadStatusRequest{UploadId: up.GetUploadId()})
	wantErr(t, err, codes.NotFound, "UPLOAD_NOT_FOUND")
	s := must(md.UploadChunks(mallory.ctx(t)))
	s.Send(&mediav1.UploadChunksRequest{UploadId: up.GetUploadId(), Data: []byte("mallory's")})
	_, err = s.CloseAndRecv()
	wantErr(t, err, codes.NotFound, "UPLOAD_NOT_FOUND")
	_, err = md.CompleteUpload(mallory.ctx(t), &mediav1.CompleteUploadRequest{UploadId: up.GetUploadId(), Sha256: make([]byte, 32)})
	wantErr(t, err, codes.NotFound, "UPLOAD_NOT_FOUND")
	read := func(d *device, c []byte) error {
		st := must(md.Download(d.ctx(t), &mediav1.DownloadRequest{BlobId: blob, Capability: c}))
		return firstErr(st.Recv)
	}
	wantErr(t, read(mallory, nil), codes.NotFound, "BLOB_NOT_FOUND")
	wantErr(t, read(mallory, aliceCap), codes.PermissionDenied, "CAPABILITY_INVALID")
	if err := read(alice2, aliceCap); err != nil {
		t.Fatalf("alice's other device with its capability: %v", err)
	}
	_, err = md.CreateCapability(mallory.ctx(t), &mediav1.CreateCapabilityRequest{BlobId: blob, Ttl: durationpb.New(time.Hour)})
	wantErr(t, err, codes.NotFound, "BLOB_NOT_FOUND")
	_, err = md.RevokeCapability(mallory.ctx(t), &mediav1.RevokeCapabilityRequest{Capability: aliceCap})
	wantErr(t, err, codes.PermissionDenied, "CAPABILITY_INVALID")
	_, err = md.DeleteBlob(mallory.ctx(t), &mediav1.DeleteBlobRequest{BlobId: blob})
	wantErr(t, err, codes.NotFound, "BLOB_NOT_FOUND")
	if err := read(alice, nil); err != nil {
		t.Fatalf("alice lost her blob to mallory's calls: %v", err)
	}
}

func methodNames(unary []grpc.MethodDesc, streams []grpc.StreamDesc) []string {
	var out []string
	for _, m := range unary {
		out = append(out, m.MethodName)
	}
	for _, s := range streams {
		out = append(out, s.StreamName)
	}
	return out
}

// otherUser checks what mallory's valid token reaches of alice's resources: nothing.
func otherUser(t *testing.T, e *env, alice, alice2, mallory *device, gid []byte) {
	// alice has a pending link and a queued message.
	aliceLink := startLink(t, e, alice)
	msg := must(e.send(t, mallory, alice, []byte("for alice"), alice.ID, alice2.ID))

	devs := must(e.auth.ListDevices(mallory.ctx(t), &authv1.ListDevicesRequest{}))
	for _, d := range devs.GetDevices() {
		if bytes.Equal(d.GetIdentityKey(), alice.Identity.Public().Bytes()) {
			t.Fatal("mallory's ListDevices shows alice's device")
		}
	}
	links := must(e.auth.ListPendingDeviceLinks(mallory.ctx(t), &authv1.ListPendingDeviceLinksRequest{}))
	if len(links.GetLinks()) != 0 {
		t.Fatalf("mallory sees pending links %v", links.GetLinks())
	}
	_, err := e.auth.ApproveDeviceLink(mallory.ctx(t), &authv1.ApproveDeviceLinkRequest{LinkId: aliceLink})
	wantErr(t, err, codes.NotFound, "LINK_NOT_FOUND")
	_, err = e.auth.RejectDeviceLink(mallory.ctx(t), &authv1.RejectDeviceLinkRequest{LinkId: aliceLink})
	wantErr(t, err, codes.NotFound, "LINK_NOT_FOUND")
	_, err = e.auth.RemoveDevice(mallory.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: alice2.ID + 10})
	wantErr(t, err, codes.NotFound, "DEVICE_NOT_FOUND")
	_, err = e.auth.DeleteAccount(mallory.ctx(t), &authv1.DeleteAccountRequest{ConfirmUsername: "alice"})
	wantErr(t, err, codes.InvalidArgument, "CONFIRMATION_MISMATCH")
	export := must(e.auth.ExportAccountData(mallory.ctx(t), &authv1.ExportAccountDataRequest{}))
	if export.GetAccount().GetUserId() != mallory.UserID {
		t.Fatalf("mallory exported %v", export.GetAccount())
	}
	// Acking alice's message id from mallory's device deletes nothing of alice's.
	must(e.msg.AckMessages(mallory.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: [][]byte{msg.GetStored()[0].GetMessageId()}}))
	if d := e.receive(t, alice).next(t); string(d.GetPayload()) != "for alice" {
		t.Fatalf("alice got %q", d.GetPayload())
	}
	// Mallory's own stream never shows alice's messages.
	r := e.receive(t, mallory)
	<-r.backlog
	r.none(t, 200*time.Millisecond)
	// Alice's group is closed to mallory.
	_, err = e.msg.SubmitCommit(mallory.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g")})
	wantErr(t, err, codes.PermissionDenied, "NOT_GROUP_MEMBER")
	_, err = e.msg.SubmitProposal(mallory.ctx(t), &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: []byte("p")})
	wantErr(t, err, codes.PermissionDenied, "NOT_GROUP_MEMBER")
	_, err = e.msg.SendGroupMessage(mallory.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 0), ClientMessageId: clientID()})
	wantErr(t, err, codes.PermissionDenied, "NOT_GROUP_MEMBER")
	_, err = e.msg.FetchWelcome(mallory.ctx(t), &messagingv1.FetchWelcomeRequest{GroupId: gid})
	wantErr(t, err, codes.NotFound, "WELCOME_NOT_FOUND")
	_, err = e.msg.GetGroupInfo(mallory.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid})
	wantErr(t, err, codes.NotFound, "GROUP_NOT_FOUND")
	_, err = e.msg.CreateGroup(mallory.ctx(t), &messagingv1.CreateGroupRequest{GroupId: clientID(), Members: []*commonv1.DeviceAddress{{UserId: alice.UserID, DeviceId: 1}}})
	wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")
	// Alice's push targets and presence settings are hers: mallory lists, removes and reads
	// only his own, and alice's presence stays hidden from him.
	must(e.push.RegisterPushTarget(alice.ctx(t), &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_Fcm{Fcm: &notificationv1.FcmTarget{RegistrationToken: "alice-token"}}}))
	if l := must(e.push.ListPushTargets(mallory.ctx(t), &notificationv1.ListPushTargetsRequest{})); len(l.GetTargets()) != 0 {
		t.Fatalf("mallory lists push targets %v", l.GetTargets())
	}
	_, err = e.push.UnregisterPushTarget(mallory.ctx(t), &notificationv1.UnregisterPushTargetRequest{})
	wantErr(t, err, codes.NotFound, "PUSH_TARGET_NOT_FOUND")
	if l := must(e.push.ListPushTargets(alice.ctx(t), &notificationv1.ListPushTargetsRequest{})); len(l.GetTargets()) != 1 {
		t.Fatalf("alice's push target after mallory's calls: %v", l.GetTargets())
	}
	must(e.pres.SetPresencePrivacy(alice.ctx(t), &presencev1.SetPresencePrivacyRequest{Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_CONTACTS, AllowedUserIds: []string{alice2.UserID}}))
	must(e.pres.SetPresencePrivacy(mallory.ctx(t), &presencev1.SetPresencePrivacyRequest{Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE}))
	must(e.pres.SetStatus(alice.ctx(t), &presencev1.SetStatusRequest{Status: presencev1.PresenceStatus_PRESENCE_STATUS_BUSY}))
	if p := must(e.pres.GetLastSeen(mallory.ctx(t), &presencev1.GetLastSeenRequest{UserIds: []string{alice.UserID}})).GetPresences()[0]; p.GetStatus() != presencev1.PresenceStatus_PRESENCE_STATUS_UNSPECIFIED || p.GetLastSeen() != nil {
		t.Fatalf("mallory sees alice's presence %v", p)
	}
	if pv := must(e.pres.GetPresencePrivacy(mallory.ctx(t), &presencev1.GetPresencePrivacyRequest{})); pv.GetVisibility() != presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE || len(pv.GetAllowedUserIds()) != 0 {
		t.Fatalf("mallory reads %v", pv)
	}
	cert := must(e.auth.GetSenderCertificate(mallory.ctx(t), &authv1.GetSenderCertificateRequest{}))
	if bytes.Contains(cert.GetCertificate(), []byte(alice.UserID)) {
		t.Fatal("mallory's sender certificate names alice")
	}
}

func startLink(t *testing.T, e *env, d *device) string {
	t.Helper()
	nd := must(keys.GenerateIdentity())
	ik := nd.Public().Bytes()
	resp := must(e.auth.StartDeviceLink(context.Background(), &authv1.StartDeviceLinkRequest{
		Username: d.Username, IdentityKey: ik, DeviceName: "pending",
		Signature: must(nd.Sign(keys.ContextDeviceLink, auth.DeviceLinkStatement(d.Username, ik, "pending"))),
	}))
	return resp.GetLinkId()
}
