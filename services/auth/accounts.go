package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/crypto/envelope"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// errAbort carries a status error out of a transaction function unchanged.
type errAbort struct{ err error }

func (e errAbort) Error() string { return e.err.Error() }

// abort wraps a client-facing status error so update/view return it as is.
func abort(err error) error { return errAbort{err} }

// update runs fn in a read-write transaction, mapping store failures to Internal and
// passing aborted status errors through.
func (s *Server) update(ctx context.Context, op string, fn func(kv.Tx) error) error {
	return s.mapTxErr(ctx, op, s.store.Update(ctx, fn))
}

func (s *Server) view(ctx context.Context, op string, fn func(kv.Tx) error) error {
	return s.mapTxErr(ctx, op, s.store.View(ctx, fn))
}

func (s *Server) mapTxErr(ctx context.Context, op string, err error) error {
	var a errAbort
	switch {
	case err == nil:
		return nil
	case errors.As(err, &a):
		return a.err
	default:
		return s.internal(ctx, op, err)
	}
}

func parseIdentityKey(b []byte) (*keys.IdentityKey, error) {
	k, err := keys.ParseIdentityKey(b)
	if err != nil {
		return nil, server.Error(codes.InvalidArgument, reasonInvalidIdentityKey, "identity key: %v", err)
	}
	return k, nil
}

// Register creates an account with its first device.
func (s *Server) Register(ctx context.Context, req *authv1.RegisterRequest) (*authv1.RegisterResponse, error) {
	if err := s.allow("register", peerKey(ctx)); err != nil {
		return nil, err
	}
	if err := checkUsername(req.GetUsername()); err != nil {
		return nil, err
	}
	if err := checkDeviceName(req.GetDeviceName()); err != nil {
		return nil, err
	}
	ik, err := parseIdentityKey(req.GetIdentityKey())
	if err != nil {
		return nil, err
	}
	if err := ik.Verify(keys.ContextRegistration, RegistrationStatement(req.GetUsername(), req.GetIdentityKey()), req.GetSignature()); err != nil {
		return nil, server.Error(codes.InvalidArgument, reasonBadSignature, "registration proof does not verify under the identity key")
	}
	now := s.now()
	account := accountRecord{UserID: newID(16), Username: req.GetUsername(), CreatedAt: now, NextDeviceID: 2}
	device := deviceRecord{ID: 1, Name: req.GetDeviceName(), IdentityKey: ik.Bytes(), CreatedAt: now}
	err = s.update(ctx, "register", func(tx kv.Tx) error {
		if _, err := tx.Get(usernameKey(account.Username)); err == nil {
			return abort(server.Error(codes.AlreadyExists, reasonUsernameTaken, "username %q is taken", account.Username))
		} else if !isNotFound(err) {
			return err
		}
		if err := tx.Put(usernameKey(account.Username), []byte(account.UserID)); err != nil {
			return err
		}
		if err := putJSON(tx, accountKey(account.UserID), account); err != nil {
			return err
		}
		return putJSON(tx, deviceKey(account.UserID, device.ID), device)
	})
	if err != nil {
		return nil, err
	}
	return &authv1.RegisterResponse{UserId: account.UserID, DeviceId: device.ID}, nil
}

// GetLoginChallenge issues a nonce good for one successful login, also for unknown
// accounts so that the answer does not reveal which usernames exist. It writes nothing:
// the nonce carries its expiry and a MAC (see challenges), so a flood of challenges
// costs the store nothing.
func (s *Server) GetLoginChallenge(ctx context.Context, req *authv1.GetLoginChallengeRequest) (*authv1.GetLoginChallengeResponse, error) {
	if err := checkUsername(req.GetUsername()); err != nil {
		return nil, err
	}
	if req.GetDeviceId() == 0 {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "device id must not be 0")
	}
	if err := s.allow("challenge", req.GetUsername()); err != nil {
		return nil, err
	}
	if err := s.allow("challenge-peer", peerKey(ctx)); err != nil {
		return nil, err
	}
	nonce, expires := s.challenges.issue(req.GetUsername(), req.GetDeviceId(), s.now().Add(s.cfg.ChallengeTTL))
	return &authv1.GetLoginChallengeResponse{Nonce: nonce, ExpiresAt: ts(expires)}, nil
}

// loginTimeout bounds the store work of one login once it has reached the server; see
// Login.
const loginTimeout = 10 * time.Second

// Login verifies a signed challenge and issues tokens. A forged, expired or misdirected
// nonce is refused before any kv access; the signature is verified outside every
// transaction; only a successful login writes, recording its nonce as used together
// with the new session, so a failed login (a wrong signature, an unknown account or
// device) costs the single kv writer nothing, and a nonce serves one successful login.
func (s *Server) Login(ctx context.Context, req *authv1.LoginRequest) (*authv1.LoginResponse, error) {
	if req.GetUsername() == "" || len(req.GetNonce()) != challengeSize || len(req.GetSignature()) == 0 || req.GetDeviceId() == 0 {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "username, device id, 32-byte nonce and signature are required")
	}
	if err := s.allow("login", req.GetUsername()); err != nil {
		return nil, err
	}
	if err := s.allow("login-peer", peerKey(ctx)); err != nil {
		return nil, err
	}
	expired := server.Error(codes.Unauthenticated, reasonChallengeExpired, "login challenge unknown, used or expired")
	failed := server.Error(codes.Unauthenticated, reasonLoginFailed, "login failed")
	now := s.now()
	chExpires, ok := s.challenges.check(req.GetNonce(), req.GetUsername(), req.GetDeviceId())
	if !ok || now.After(chExpires) {
		return nil, expired
	}
	// A login that reached the server records its nonce as used even when the caller
	// gives up or the connection drops, so a signed request cannot be replayed after a
	// cancel.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loginTimeout)
	defer cancel()
	var used bool
	var account *accountRecord
	var dev *deviceRecord
	err := s.view(ctx, "login", func(tx kv.Tx) error {
		used, account, dev = false, nil, nil
		if _, err := tx.Get(challengeKey(req.GetNonce())); err == nil {
			used = true
			return nil
		} else if !isNotFound(err) {
			return err
		}
		var err error
		if account, err = lookupAccount(tx, req.GetUsername()); isNotFound(err) {
			account = nil
			return nil
		} else if err != nil {
			return err
		}
		if dev, err = loadDevice(tx, account.UserID, req.GetDeviceId()); isNotFound(err) {
			dev = nil
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case used:
		return nil, expired
	case dev == nil:
		return nil, failed
	}
	ik, err := keys.ParseIdentityKey(dev.IdentityKey)
	if err != nil {
		return nil, s.internal(ctx, "login", err)
	}
	if ik.Verify(keys.ContextLoginChallenge, LoginStatement(req.GetUsername(), req.GetDeviceId(), req.GetNonce()), req.GetSignature()) != nil {
		return nil, failed
	}
	// One transaction records the nonce as used and stores the session: of two
	// concurrent logins with the same nonce only the first to commit succeeds.
	family := make([]byte, familyIDSize)
	rand.Read(family)
	refresh, hash := newRefreshToken(family)
	expires := now.Add(s.cfg.RefreshTokenTTL)
	var stored bool
	err = s.update(ctx, "login", func(tx kv.Tx) error {
		used, stored = false, false
		if _, err := tx.Get(challengeKey(req.GetNonce())); err == nil {
			used = true
			return nil
		} else if !isNotFound(err) {
			return err
		}
		// The device may have been removed since the read.
		if _, err := tx.Get(deviceKey(account.UserID, dev.ID)); isNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		rec := challengeRecord{Username: req.GetUsername(), DeviceID: req.GetDeviceId(), ExpiresAt: chExpires}
		if err := putJSON(tx, challengeKey(req.GetNonce()), rec); err != nil {
			return err
		}
		if err := makeRoomForFamily(tx, account.UserID, dev.ID); err != nil {
			return err
		}
		stored = true
		return putFamily(tx, family, &familyRecord{UserID: account.UserID, DeviceID: dev.ID}, hash, expires)
	})
	switch {
	case err != nil:
		return nil, err
	case used:
		return nil, expired
	case !stored:
		return nil, failed
	}
	pair, err := s.tokenPair(ctx, account.UserID, dev.ID, family, refresh, expires)
	if err != nil {
		return nil, err
	}
	return &authv1.LoginResponse{UserId: account.UserID, Tokens: pair}, nil
}

// tokenPair signs an access token of the session family to go with its refresh token.
func (s *Server) tokenPair(ctx context.Context, userID string, deviceID uint32, family []byte, refresh string, refreshExpires time.Time) (*authv1.TokenPair, error) {
	var fam [familyIDSize]byte
	copy(fam[:], family)
	access, claims, err := s.tokens.Issue(userID, deviceID, fam)
	if err != nil {
		return nil, s.internal(ctx, "issue token", err)
	}
	return &authv1.TokenPair{
		AccessToken:           access,
		AccessTokenExpiresAt:  ts(claims.ExpiresAt),
		RefreshToken:          refresh,
		RefreshTokenExpiresAt: ts(refreshExpires),
	}, nil
}

// RefreshToken rotates a refresh token: the presented token is replaced by a new one in
// its family's record, so it stops existing; a reused one deletes its whole family.
func (s *Server) RefreshToken(ctx context.Context, req *authv1.RefreshTokenRequest) (*authv1.RefreshTokenResponse, error) {
	if err := s.allow("refresh", peerKey(ctx)); err != nil {
		return nil, err
	}
	invalid := server.Error(codes.Unauthenticated, reasonRefreshTokenInvalid, "refresh token invalid or revoked")
	family, ok := familyOf(req.GetRefreshToken())
	if !ok {
		return nil, invalid
	}
	hash := hashToken(req.GetRefreshToken())
	now := s.now()
	refresh, newHash := newRefreshToken(family)
	expires := now.Add(s.cfg.RefreshTokenTTL)
	var f familyRecord
	reused := false
	err := s.update(ctx, "refresh", func(tx kv.Tx) error {
		reused = false
		if err := getJSON(tx, familyKey(family), &f); isNotFound(err) {
			return abort(invalid)
		} else if err != nil {
			return err
		}
		if f.Removed {
			return abort(server.Error(codes.Unauthenticated, reasonDeviceRemoved, "device has been removed"))
		}
		if subtle.ConstantTimeCompare(f.Current, hash) != 1 {
			// A rotated token of a live family: one of its holders stole it.
			reused = true
			return deleteFamily(tx, family, &f)
		}
		if now.After(f.ExpiresAt) {
			return abort(server.Error(codes.Unauthenticated, reasonRefreshTokenExpired, "refresh token expired; log in again"))
		}
		if _, err := tx.Get(deviceKey(f.UserID, f.DeviceID)); isNotFound(err) {
			return abort(server.Error(codes.Unauthenticated, reasonDeviceRemoved, "device has been removed"))
		} else if err != nil {
			return err
		}
		return putFamily(tx, family, &f, newHash, expires)
	})
	if err != nil {
		return nil, err
	}
	if reused {
		return nil, server.Error(codes.Unauthenticated, reasonRefreshTokenReused, "refresh token was already used; its session is revoked, log in again")
	}
	pair, err := s.tokenPair(ctx, f.UserID, f.DeviceID, family, refresh, expires)
	if err != nil {
		return nil, err
	}
	return &authv1.RefreshTokenResponse{Tokens: pair}, nil
}

// ListDevices lists the caller's devices.
func (s *Server) ListDevices(ctx context.Context, _ *authv1.ListDevicesRequest) (*authv1.ListDevicesResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("account", p.UserID); err != nil {
		return nil, err
	}
	var devs []deviceRecord
	if err := s.view(ctx, "list devices", func(tx kv.Tx) error {
		devs, err = loadDevices(tx, p.UserID)
		return err
	}); err != nil {
		return nil, err
	}
	resp := &authv1.ListDevicesResponse{}
	for _, d := range devs {
		resp.Devices = append(resp.Devices, deviceProto(d))
	}
	return resp, nil
}

func deviceProto(d deviceRecord) *authv1.Device {
	return &authv1.Device{DeviceId: d.ID, Name: d.Name, IdentityKey: d.IdentityKey, CreatedAt: ts(d.CreatedAt)}
}

// RemoveDevice removes one device of the caller's account with everything it owns.
func (s *Server) RemoveDevice(ctx context.Context, req *authv1.RemoveDeviceRequest) (*authv1.RemoveDeviceResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("account", p.UserID); err != nil {
		return nil, err
	}
	// The device's keys are erased after the removal commits, in bounded transactions.
	purge := purgeRecord{UserID: p.UserID, DeviceIDs: []uint32{req.GetDeviceId()}}
	var purgeID, event string
	err = s.update(ctx, "remove device", func(tx kv.Tx) error {
		devs, err := loadDevices(tx, p.UserID)
		if err != nil {
			return err
		}
		found := false
		for _, d := range devs {
			found = found || d.ID == req.GetDeviceId()
		}
		if !found {
			return abort(server.Error(codes.NotFound, reasonDeviceNotFound, "account has no device %d", req.GetDeviceId()))
		}
		if len(devs) == 1 {
			return abort(server.Error(codes.FailedPrecondition, reasonLastDevice, "device %d is the account's only device; delete the account instead", req.GetDeviceId()))
		}
		if err := tx.Delete(deviceKey(p.UserID, req.GetDeviceId())); err != nil {
			return err
		}
		if err := clearDeviceFamilies(tx, p.UserID, req.GetDeviceId()); err != nil {
			return err
		}
		if event, err = s.addEvent(tx, eventDeviceRemoved, &eventsv1.DeviceRemoved{UserId: p.UserID, DeviceId: req.GetDeviceId()}); err != nil {
			return err
		}
		purgeID, err = startPurge(tx, purge)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.finishPurge(ctx, purgeID, purge)
	s.flushEvent(ctx, event)
	s.publish(ctx, "devices changed", func(e Events) error { return e.DevicesChanged(ctx, p.UserID) })
	return &authv1.RemoveDeviceResponse{}, nil
}

// DeleteAccount erases the caller's account, devices, keys and tokens. The account and
// its devices go in one transaction; what they owned follows in bounded ones.
func (s *Server) DeleteAccount(ctx context.Context, req *authv1.DeleteAccountRequest) (*authv1.DeleteAccountResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("account", p.UserID); err != nil {
		return nil, err
	}
	var deviceIDs []uint32
	var purge purgeRecord
	var purgeID, event string
	err = s.update(ctx, "delete account", func(tx kv.Tx) error {
		deviceIDs = deviceIDs[:0]
		account, err := loadAccount(tx, p.UserID)
		if err != nil {
			return err
		}
		if req.GetConfirmUsername() != account.Username {
			return abort(server.Error(codes.InvalidArgument, reasonConfirmationMismatch, "confirm_username does not match the account's username"))
		}
		devs, err := loadDevices(tx, p.UserID)
		if err != nil {
			return err
		}
		for _, d := range devs {
			deviceIDs = append(deviceIDs, d.ID)
		}
		if err := deletePrefix(tx, devicePrefix(p.UserID)); err != nil {
			return err
		}
		if err := tx.Delete(usernameKey(account.Username)); err != nil {
			return err
		}
		if err := tx.Delete(accountKey(p.UserID)); err != nil {
			return err
		}
		if event, err = s.addEvent(tx, eventAccountDeleted, &eventsv1.AccountDeleted{UserId: p.UserID, DeviceIds: deviceIDs}); err != nil {
			return err
		}
		// Keys, sessions and links go after the account, in bounded transactions.
		purge = purgeRecord{UserID: p.UserID, DeviceIDs: deviceIDs, Account: true}
		purgeID, err = startPurge(tx, purge)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.finishPurge(ctx, purgeID, purge)
	s.flushEvent(ctx, event)
	s.publish(ctx, "devices changed", func(e Events) error { return e.DevicesChanged(ctx, p.UserID) })
	return &authv1.DeleteAccountResponse{}, nil
}

// ExportAccountData returns everything stored about the caller's account.
func (s *Server) ExportAccountData(ctx context.Context, _ *authv1.ExportAccountDataRequest) (*authv1.ExportAccountDataResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("export", p.UserID); err != nil {
		return nil, err
	}
	resp := &authv1.ExportAccountDataResponse{ExportedAt: ts(s.now())}
	err = s.view(ctx, "export", func(tx kv.Tx) error {
		resp.Devices, resp.KeyCounts = nil, nil
		account, err := loadAccount(tx, p.UserID)
		if err != nil {
			return err
		}
		resp.Account = &authv1.Account{UserId: account.UserID, Username: account.Username, CreatedAt: ts(account.CreatedAt)}
		devs, err := loadDevices(tx, p.UserID)
		if err != nil {
			return err
		}
		for _, d := range devs {
			resp.Devices = append(resp.Devices, deviceProto(d))
			counts, err := preKeyCounts(tx, p.UserID, d.ID)
			if err != nil {
				return err
			}
			kps, err := countPrefix(tx, perDevicePool("kp", p.UserID, d.ID))
			if err != nil {
				return err
			}
			resp.KeyCounts = append(resp.KeyCounts, &authv1.DeviceKeyCounts{DeviceId: d.ID, Prekeys: counts, KeyPackages: uint32(kps)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// LookupIdentity resolves an account to its devices' identity keys.
func (s *Server) LookupIdentity(ctx context.Context, req *authv1.LookupIdentityRequest) (*authv1.LookupIdentityResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetUsername() == "" && req.GetUserId() == "" {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "set username or user_id")
	}
	if err := s.allow("lookup", p.UserID); err != nil {
		return nil, err
	}
	resp := &authv1.LookupIdentityResponse{}
	err = s.view(ctx, "lookup identity", func(tx kv.Tx) error {
		resp.Devices = nil
		var account *accountRecord
		var err error
		if req.GetUsername() != "" {
			account, err = lookupAccount(tx, req.GetUsername())
		} else {
			account, err = loadAccount(tx, req.GetUserId())
		}
		if isNotFound(err) {
			return abort(server.Error(codes.NotFound, reasonUserNotFound, "no such account"))
		} else if err != nil {
			return err
		}
		resp.UserId, resp.Username = account.UserID, account.Username
		devs, err := loadDevices(tx, account.UserID)
		for _, d := range devs {
			resp.Devices = append(resp.Devices, &authv1.DeviceIdentity{DeviceId: d.ID, IdentityKey: d.IdentityKey})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// GetSenderCertificate issues a sender certificate for the calling device.
func (s *Server) GetSenderCertificate(ctx context.Context, _ *authv1.GetSenderCertificateRequest) (*authv1.GetSenderCertificateResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("certificate", p.UserID); err != nil {
		return nil, err
	}
	var dev *deviceRecord
	if err := s.view(ctx, "sender certificate", func(tx kv.Tx) error {
		dev, err = loadDevice(tx, p.UserID, p.DeviceID)
		if isNotFound(err) {
			return abort(server.Error(codes.Unauthenticated, reasonDeviceRemoved, "device has been removed"))
		}
		return err
	}); err != nil {
		return nil, err
	}
	ik, err := keys.ParseIdentityKey(dev.IdentityKey)
	if err != nil {
		return nil, s.internal(ctx, "sender certificate", err)
	}
	cert, err := s.certs.Issue(p.UserID, p.DeviceID, ik.ECDH())
	if err != nil {
		return nil, s.internal(ctx, "sender certificate", err)
	}
	parsed, err := envelope.ParseSenderCertificate(cert)
	if err != nil {
		return nil, s.internal(ctx, "sender certificate", err)
	}
	return &authv1.GetSenderCertificateResponse{Certificate: cert, ExpiresAt: ts(parsed.Expires())}, nil
}

// GetTrustRoot returns the server's public keys.
func (s *Server) GetTrustRoot(ctx context.Context, _ *authv1.GetTrustRootRequest) (*authv1.GetTrustRootResponse, error) {
	if err := s.allow("trust-root", peerKey(ctx)); err != nil {
		return nil, err
	}
	return s.trust, nil
}

// Sweep deletes the used-nonce records of expired login challenges, undecided device links and sessions, and
// finishes erasures a crash interrupted. The binary runs it periodically; it keeps the
// store from growing with abandoned requests. Each transaction deletes at most
// purgeBatch keys.
func (s *Server) Sweep(ctx context.Context) error {
	now := s.now()
	if err := s.sweepPrefix(ctx, prefix+"challenge/", func(_, v []byte) (bool, []byte) {
		var rec challengeRecord
		return decodeJSON(v, &rec) != nil || now.After(rec.ExpiresAt), nil
	}); err != nil {
		return err
	}
	if err := s.sweepPrefix(ctx, prefix+"link/", func(_, v []byte) (bool, []byte) {
		var rec linkRecord
		if decodeJSON(v, &rec) != nil {
			return true, nil
		}
		if !now.After(rec.ExpiresAt.Add(time.Hour)) {
			return false, nil
		}
		if rec.UserID == "" {
			return true, linkNameKey(rec.Username, rec.ID)
		}
		return true, linkIndexKey(rec.UserID, rec.ID)
	}); err != nil {
		return err
	}
	if err := s.sweepFamilies(ctx); err != nil {
		return err
	}
	// Sessions as stored before families replaced them can no longer be used.
	for _, legacy := range []string{prefix + "refresh/", prefix + "refreshidx/"} {
		if err := s.purgePrefix(ctx, purgeStep{prefix: []byte(legacy)}); err != nil {
			return err
		}
	}
	return s.resumePurges(ctx)
}
