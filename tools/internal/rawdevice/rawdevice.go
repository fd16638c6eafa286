// Package rawdevice drives the Guardyn API as a device would, minus the end-to-end
// encryption: it registers, logs in and links devices with real identity keys, and sends
// opaque payloads. The end-to-end tests of the server and the load generator use it to
// exercise the services without the cost of the client's crypto.
package rawdevice

import (
	"context"
	"crypto/rand"
	"fmt"

	"google.golang.org/grpc/metadata"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/auth"
)

// Device is one logged-in device.
type Device struct {
	Username string
	UserID   string
	ID       uint32
	Identity *keys.Identity
	Tokens   *authv1.TokenPair
}

// Context returns ctx carrying the device's access token.
func (d *Device) Context(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.Tokens.GetAccessToken())
}

// Register creates an account with a fresh identity key and logs its first device in.
func Register(ctx context.Context, c authv1.AuthServiceClient, username string) (*Device, error) {
	id, err := keys.GenerateIdentity()
	if err != nil {
		return nil, err
	}
	ik := id.Public().Bytes()
	sig, err := id.Sign(keys.ContextRegistration, auth.RegistrationStatement(username, ik))
	if err != nil {
		return nil, err
	}
	resp, err := c.Register(ctx, &authv1.RegisterRequest{Username: username, IdentityKey: ik, DeviceName: "raw", Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", username, err)
	}
	d := &Device{Username: username, UserID: resp.GetUserId(), ID: resp.GetDeviceId(), Identity: id}
	return d, Login(ctx, c, d)
}

// Login signs a fresh challenge and stores the device's tokens.
func Login(ctx context.Context, c authv1.AuthServiceClient, d *Device) error {
	ch, err := c.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: d.Username, DeviceId: d.ID})
	if err != nil {
		return fmt.Errorf("login challenge for %s/%d: %w", d.Username, d.ID, err)
	}
	sig, err := d.Identity.Sign(keys.ContextLoginChallenge, auth.LoginStatement(d.Username, d.ID, ch.GetNonce()))
	if err != nil {
		return err
	}
	resp, err := c.Login(ctx, &authv1.LoginRequest{Username: d.Username, DeviceId: d.ID, Nonce: ch.GetNonce(), Signature: sig})
	if err != nil {
		return fmt.Errorf("login %s/%d: %w", d.Username, d.ID, err)
	}
	d.UserID, d.Tokens = resp.GetUserId(), resp.GetTokens()
	return nil
}

// Link adds a new device to approver's account (approved by approver) and logs it in.
func Link(ctx context.Context, c authv1.AuthServiceClient, approver *Device, name string) (*Device, error) {
	id, err := keys.GenerateIdentity()
	if err != nil {
		return nil, err
	}
	ik := id.Public().Bytes()
	sig, err := id.Sign(keys.ContextDeviceLink, auth.DeviceLinkStatement(approver.Username, ik, name))
	if err != nil {
		return nil, err
	}
	start, err := c.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: approver.Username, IdentityKey: ik, DeviceName: name, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("start device link: %w", err)
	}
	approved, err := c.ApproveDeviceLink(approver.Context(ctx), &authv1.ApproveDeviceLinkRequest{LinkId: start.GetLinkId()})
	if err != nil {
		return nil, fmt.Errorf("approve device link: %w", err)
	}
	d := &Device{Username: approver.Username, UserID: approver.UserID, ID: approved.GetDeviceId(), Identity: id}
	return d, Login(ctx, c, d)
}

// NewMessageID returns a random 16-byte client message id.
func NewMessageID() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

// SendRequest addresses one opaque payload to the listed devices of a user.
func SendRequest(recipient string, payload []byte, devices ...uint32) *messagingv1.SendMessageRequest {
	req := &messagingv1.SendMessageRequest{RecipientUserId: recipient, ClientMessageId: NewMessageID()}
	for _, d := range devices {
		req.Envelopes = append(req.Envelopes, &messagingv1.DeviceEnvelope{DeviceId: d, SealedEnvelope: payload})
	}
	return req
}
