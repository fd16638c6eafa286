// Package presence is Guardyn's presence service: which accounts are online, away or busy,
// when they were last seen, and who may see it. The API is proto/guardyn/presence/v1.
//
// A device is online while its key in the presence bucket (bus.BucketPresence, a JetStream
// KV bucket whose keys expire bus.PresenceTTL after their last write) lives. A device keeps
// it alive with Heartbeat, or, with no traffic of its own, by holding a
// MessagingService.Receive stream open: messaging instances report their open streams on
// bus.SubjectReceiveStreams and the presence service refreshes their keys. Every presence
// instance watches the whole bucket, so a change written by any instance reaches the
// WatchPresence streams of all of them.
//
// The server sees only the coarse status. A status text is sealed by the client for its
// contacts (libs/crypto/presencestatus) and passed through opaque. Privacy settings and last
// seen times live in the kv store; visibility is symmetric, as in Signal: a viewer sees an
// account's presence only when each allows the other.
package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/crypto/presencestatus"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/server"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// Defaults for Config fields left zero.
const (
	// DefaultMaxWatches bounds the WatchPresence streams one account holds open on one
	// instance (one per device is the normal case).
	DefaultMaxWatches = 16
)

// subjectPrivacyChanged carries the user id whose privacy setting changed, so every
// instance drops its cached copy and re-evaluates its watches (core NATS).
const subjectPrivacyChanged = "guardyn.presence.privacy"

// Limiter rate-limits by key ("action|caller").
type Limiter interface {
	Allow(key string) bool
}

// Config holds the dependencies of a Server.
type Config struct {
	// Store keeps privacy settings and last seen times.
	Store kv.Store
	// Bucket is the presence bucket (bus.Bus.PresenceBucket).
	Bucket jetstream.KeyValue
	// Conn carries Receive stream reports and privacy change announcements.
	Conn *nats.Conn

	Limits Limiter // optional
	Now    func() time.Time
	Logger *slog.Logger

	MaxWatches int
	// Heartbeat is the interval Heartbeat tells clients (0: bus.PresenceHeartbeat); it must
	// be well below the bucket's TTL.
	Heartbeat time.Duration
}

// Server implements presencev1.PresenceServiceServer.
type Server struct {
	presencev1.UnimplementedPresenceServiceServer

	store      kv.Store
	bucket     jetstream.KeyValue
	conn       *nats.Conn
	limits     Limiter
	now        func() time.Time
	log        *slog.Logger
	maxWatches int
	heartbeat  time.Duration

	view      *view
	privacy   *privacies
	frames    *frames
	synced    chan struct{} // closed once the watch delivered the bucket's current keys
	lastSeen  chan lastSeenUpdate
	cancel    context.CancelFunc
	done      sync.WaitGroup
	subs      []*nats.Subscription
	closeOnce sync.Once
}

type lastSeenUpdate struct {
	token string
	at    time.Time
}

// New returns a Server that follows the bucket and the stream reports until Close.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Bucket == nil || cfg.Conn == nil {
		return nil, errors.New("presence: config needs Store, Bucket and Conn")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxWatches <= 0 {
		cfg.MaxWatches = DefaultMaxWatches
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = bus.PresenceHeartbeat
	}
	s := &Server{
		store: cfg.Store, bucket: cfg.Bucket, conn: cfg.Conn, limits: cfg.Limits, now: cfg.Now,
		log: cfg.Logger, maxWatches: cfg.MaxWatches, heartbeat: cfg.Heartbeat,
		privacy:  &privacies{store: cfg.Store, now: cfg.Now, entries: make(map[string]privacyEntry)},
		frames:   newFrames(),
		synced:   make(chan struct{}),
		lastSeen: make(chan lastSeenUpdate, 4096),
	}
	s.view = newView(s.wentOffline)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	w, err := cfg.Bucket.WatchAll(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("presence: watch bucket: %w", err)
	}
	s.done.Add(2)
	go s.follow(ctx, w)
	go s.writeLastSeen(ctx)
	for _, sub := range []struct {
		subject, queue string
		fn             nats.MsgHandler
	}{
		{bus.SubjectReceiveStreams, "presence", s.onReceiveStreams},
		{subjectPrivacyChanged, "", s.onPrivacyChanged},
	} {
		ns, err := cfg.Conn.QueueSubscribe(sub.subject, sub.queue, sub.fn)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("presence: subscribe %s: %w", sub.subject, err)
		}
		s.subs = append(s.subs, ns)
	}
	return s, nil
}

// Close stops following the bucket and the reports; open watches end with the gRPC server.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		for _, sub := range s.subs {
			sub.Unsubscribe()
		}
		s.cancel()
		s.done.Wait()
	})
	return nil
}

// Ready reports whether the view has caught up with the bucket, for readiness probes.
func (s *Server) Ready(ctx context.Context) error {
	select {
	case <-s.synced:
		return nil
	default:
		return errors.New("presence: bucket not read yet")
	}
}

// follow applies the bucket watch to the view until ctx ends.
func (s *Server) follow(ctx context.Context, w jetstream.KeyWatcher) {
	defer s.done.Done()
	defer w.Stop()
	synced := false
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				if !synced {
					synced = true
					close(s.synced)
				}
				continue
			}
			s.view.apply(e)
		}
	}
}

// wentOffline queues the last seen of an account whose last device went offline.
func (s *Server) wentOffline(token string, at time.Time) {
	select {
	case s.lastSeen <- lastSeenUpdate{token, at}:
	default:
		s.log.Warn("presence: last seen queue full; update dropped")
	}
}

// writeLastSeen stores queued last seen times in batches, keeping the latest of each.
func (s *Server) writeLastSeen(ctx context.Context) {
	defer s.done.Done()
	batch := make(map[string]time.Time)
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-s.lastSeen:
			batch[u.token] = u.at
		}
	drain:
		for len(batch) < 1024 {
			select {
			case u := <-s.lastSeen:
				if u.at.After(batch[u.token]) {
					batch[u.token] = u.at
				}
			default:
				break drain
			}
		}
		if err := s.storeLastSeen(ctx, batch); err != nil {
			s.log.Warn("presence: store last seen", "err", err)
		}
		for token, at := range batch {
			s.view.stored(token, at)
		}
		clear(batch)
	}
}

func (s *Server) storeLastSeen(ctx context.Context, batch map[string]time.Time) error {
	return s.store.Update(ctx, func(tx kv.Tx) error {
		for token, at := range batch {
			key := []byte(lastSeenPrefix + token)
			if old, err := tx.Get(key); err == nil {
				if prev, err := decodeLastSeen(old); err == nil && !at.After(prev) {
					continue
				}
			}
			if err := tx.Put(key, encodeLastSeen(at)); err != nil {
				return err
			}
		}
		return nil
	})
}

// storedLastSeen reads the last seen times of tokens from the store.
func (s *Server) storedLastSeen(ctx context.Context, tokens []string) (map[string]time.Time, error) {
	if len(tokens) == 0 {
		return nil, nil
	}
	out := make(map[string]time.Time, len(tokens))
	err := s.store.View(ctx, func(tx kv.Tx) error {
		for _, token := range tokens {
			v, err := tx.Get([]byte(lastSeenPrefix + token))
			if errors.Is(err, kv.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if at, err := decodeLastSeen(v); err == nil {
				out[token] = at
			}
		}
		return nil
	})
	return out, err
}

func caller(ctx context.Context) (authn.Principal, error) {
	p, ok := authn.FromContext(ctx)
	if !ok {
		return authn.Principal{}, server.Error(codes.Unauthenticated, authn.ReasonTokenMissing, "missing bearer access token")
	}
	return p, nil
}

func (s *Server) allow(action, key string) error {
	if s.limits != nil && !s.limits.Allow(action+"|"+key) {
		return server.Error(codes.ResourceExhausted, reasonRateLimited, "too many %s requests; retry later", action)
	}
	return nil
}

func (s *Server) unavailable(ctx context.Context, what string, err error) error {
	s.log.WarnContext(ctx, "presence: "+what, "err", err)
	return server.Error(codes.Unavailable, reasonUnavailable, "presence unavailable; retry")
}

// SetStatus writes the calling device's record.
func (s *Server) SetStatus(ctx context.Context, req *presencev1.SetStatusRequest) (*presencev1.SetStatusResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	st := req.GetStatus()
	if !onlineStatus(st) && st != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "SetStatusRequest.status: got %v, want ONLINE, AWAY, BUSY or OFFLINE", st)
	}
	if sealed := req.GetSealedStatus(); len(sealed) > 0 {
		if len(sealed) > presencestatus.MaxSealedSize {
			return nil, server.Error(codes.InvalidArgument, server.ReasonLimitExceeded, "SetStatusRequest.sealed_status: %d bytes, max %d", len(sealed), presencestatus.MaxSealedSize)
		}
		if _, err := presencestatus.KeyID(sealed); err != nil {
			return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "SetStatusRequest.sealed_status: %v", err)
		}
		if st == presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
			return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "SetStatusRequest.sealed_status: must be empty with status OFFLINE")
		}
	}
	if err := s.allow("presence-status", deviceName(p)); err != nil {
		return nil, err
	}
	key, err := deviceKey(p.UserID, p.DeviceID)
	if err != nil {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "caller: %v", err)
	}
	rec := record{status: st, updated: s.now(), sealed: req.GetSealedStatus()}
	if _, err := s.bucket.Put(ctx, key, rec.encode()); err != nil {
		return nil, s.unavailable(ctx, "put status", err)
	}
	return &presencev1.SetStatusResponse{}, nil
}

// Heartbeat refreshes the calling device's record.
func (s *Server) Heartbeat(ctx context.Context, _ *presencev1.HeartbeatRequest) (*presencev1.HeartbeatResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("presence-heartbeat", deviceName(p)); err != nil {
		return nil, err
	}
	if err := s.refresh(ctx, p.UserID, p.DeviceID); err != nil {
		return nil, s.unavailable(ctx, "heartbeat", err)
	}
	return &presencev1.HeartbeatResponse{Interval: durationpb.New(s.heartbeat)}, nil
}

// refresh rewrites a device's record with the current time, keeping its status, or marks it
// online. It writes only if nobody wrote the key since the view last saw it, so a status
// set meanwhile through another instance is never overwritten by an older one; losing that
// race is success, since the key was just refreshed.
func (s *Server) refresh(ctx context.Context, userID string, deviceID uint32) error {
	key, err := deviceKey(userID, deviceID)
	if err != nil {
		return err
	}
	token, _, _ := parseDeviceKey(key)
	cur, ok := s.view.device(token, deviceID)
	if !ok {
		rec := record{status: presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE, updated: s.now()}
		_, err = s.bucket.Create(ctx, key, rec.encode())
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil
		}
		return err
	}
	rec := cur.rec
	rec.updated = s.now()
	_, err = s.bucket.Update(ctx, key, rec.encode(), cur.rev)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return nil
	}
	return err
}

func deviceName(p authn.Principal) string { return fmt.Sprintf("%s/%d", p.UserID, p.DeviceID) }

// tokens maps requested user ids to bucket tokens, dropping duplicates.
func tokens(ids []string) (map[string]string, []string, error) {
	m := make(map[string]string, len(ids))
	order := make([]string, 0, len(ids))
	for _, id := range ids {
		t, err := bus.EscapeToken(id)
		if err != nil {
			return nil, nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "user id %q: %v", id, err)
		}
		if _, dup := m[t]; !dup {
			m[t] = id
			order = append(order, t)
		}
	}
	return m, order, nil
}

// presenceOf is owner's presence as viewer may see it; lastSeen supplies stored times for
// offline accounts.
func (s *Server) presenceOf(ctx context.Context, viewer, owner, token string, lastSeen func(string) (time.Time, error)) (*presencev1.Presence, error) {
	out := &presencev1.Presence{UserId: owner}
	ok, err := s.privacy.visible(ctx, viewer, owner)
	if err != nil || !ok {
		return out, err
	}
	a := s.view.account(token)
	out.Status = a.status
	if a.status != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
		out.SealedStatus = a.sealed
		out.LastSeen = timestamppb.New(s.now().Truncate(time.Minute))
		return out, nil
	}
	at := a.lastSeen
	if at.IsZero() {
		if at, err = lastSeen(token); err != nil {
			return nil, err
		}
	}
	if !at.IsZero() {
		out.LastSeen = timestamppb.New(at.Truncate(time.Minute))
	}
	return out, nil
}

// GetLastSeen returns the visible presence of each requested account.
func (s *Server) GetLastSeen(ctx context.Context, req *presencev1.GetLastSeenRequest) (*presencev1.GetLastSeenResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("presence-lookup", p.UserID); err != nil {
		return nil, err
	}
	for _, id := range req.GetUserIds() {
		if _, err := bus.EscapeToken(id); err != nil {
			return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "GetLastSeenRequest.user_ids: %q: %v", id, err)
		}
	}
	toks := make([]string, len(req.GetUserIds()))
	for i, id := range req.GetUserIds() {
		toks[i], _ = bus.EscapeToken(id)
	}
	stored, err := s.storedLastSeen(ctx, toks)
	if err != nil {
		return nil, s.unavailable(ctx, "read last seen", err)
	}
	resp := &presencev1.GetLastSeenResponse{Presences: make([]*presencev1.Presence, 0, len(toks))}
	for i, id := range req.GetUserIds() {
		pr, err := s.presenceOf(ctx, p.UserID, id, toks[i], func(t string) (time.Time, error) { return stored[t], nil })
		if err != nil {
			return nil, s.unavailable(ctx, "read privacy", err)
		}
		resp.Presences = append(resp.Presences, pr)
	}
	return resp, nil
}

// WatchPresence streams the visible presence of the requested accounts: the current state
// of each, then every change, coalesced per account.
func (s *Server) WatchPresence(req *presencev1.WatchPresenceRequest, stream grpc.ServerStreamingServer[presencev1.WatchPresenceResponse]) error {
	ctx := stream.Context()
	p, err := caller(ctx)
	if err != nil {
		return err
	}
	if len(req.GetUserIds()) == 0 {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "WatchPresenceRequest.user_ids: empty")
	}
	users, _, err := tokens(req.GetUserIds())
	if err != nil {
		return err
	}
	if err := s.allow("presence-watch", p.UserID); err != nil {
		return err
	}
	anyVisible := false
	for _, id := range users {
		ok, err := s.privacy.visible(ctx, p.UserID, id)
		if err != nil {
			return s.unavailable(ctx, "read privacy", err)
		}
		if ok {
			anyVisible = true
			break
		}
	}
	if !anyVisible {
		return server.Error(codes.PermissionDenied, reasonPresenceHidden, "none of the %d accounts shows its presence to you", len(users))
	}
	w := newWatch(p.UserID, users)
	if !s.view.add(w, s.maxWatches) {
		return server.Error(codes.ResourceExhausted, reasonWatchLimit, "this account has %d presence watches open here", s.maxWatches)
	}
	defer s.view.remove(w)
	fr := s.frames.acquire(users)
	defer s.frames.release(users)
	w.markAll()
	sent := make(map[string]*presencev1.Presence, len(users))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.signal:
		}
		for _, token := range w.take() {
			resp, err := fr[token].response(ctx, s, p.UserID, users[token], token)
			if err != nil {
				return s.unavailable(ctx, "read presence", err)
			}
			if old, ok := sent[token]; ok && samePresence(old, resp.GetPresence()) {
				continue
			}
			sent[token] = resp.GetPresence()
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

func samePresence(a, b *presencev1.Presence) bool {
	return a.GetStatus() == b.GetStatus() && string(a.GetSealedStatus()) == string(b.GetSealedStatus()) &&
		a.GetLastSeen().AsTime().Equal(b.GetLastSeen().AsTime()) && (a.GetLastSeen() == nil) == (b.GetLastSeen() == nil)
}

// SetPresencePrivacy stores who may see the caller's presence and tells every instance.
func (s *Server) SetPresencePrivacy(ctx context.Context, req *presencev1.SetPresencePrivacyRequest) (*presencev1.SetPresencePrivacyResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	vis := req.GetVisibility()
	if vis < presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE || vis > presencev1.PresenceVisibility_PRESENCE_VISIBILITY_NOBODY {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "SetPresencePrivacyRequest.visibility: got %v, want EVERYONE, CONTACTS or NOBODY", vis)
	}
	allowed := req.GetAllowedUserIds()
	if len(allowed) > maxAllowed {
		return nil, server.Error(codes.InvalidArgument, server.ReasonLimitExceeded, "SetPresencePrivacyRequest.allowed_user_ids: %d items, max %d", len(allowed), maxAllowed)
	}
	seen := make(map[string]struct{}, len(allowed))
	list := make([]string, 0, len(allowed))
	for _, id := range allowed {
		if id == "" || len(id) > maxUserIDLen {
			return nil, server.Error(codes.InvalidArgument, server.ReasonLimitExceeded, "SetPresencePrivacyRequest.allowed_user_ids: an id of %d characters, want 1..%d", len(id), maxUserIDLen)
		}
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			list = append(list, id)
		}
	}
	if err := s.allow("presence-privacy", p.UserID); err != nil {
		return nil, err
	}
	err = s.store.Update(ctx, func(tx kv.Tx) error {
		return tx.Put([]byte(privacyPrefix+p.UserID), encodePrivacy(vis, list))
	})
	if err != nil {
		return nil, s.unavailable(ctx, "store privacy", err)
	}
	s.applyPrivacyChange(p.UserID)
	if err := s.conn.Publish(subjectPrivacyChanged, []byte(p.UserID)); err != nil {
		s.log.WarnContext(ctx, "presence: announce privacy change", "err", err)
	}
	return &presencev1.SetPresencePrivacyResponse{}, nil
}

func (s *Server) applyPrivacyChange(userID string) {
	s.privacy.forget(userID)
	if token, err := bus.EscapeToken(userID); err == nil {
		s.view.privacyChanged(userID, token)
	}
}

func (s *Server) onPrivacyChanged(m *nats.Msg) {
	if len(m.Data) == 0 || len(m.Data) > maxUserIDLen {
		return
	}
	s.applyPrivacyChange(string(m.Data))
}

// GetPresencePrivacy returns the caller's setting.
func (s *Server) GetPresencePrivacy(ctx context.Context, _ *presencev1.GetPresencePrivacyRequest) (*presencev1.GetPresencePrivacyResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("presence-lookup", p.UserID); err != nil {
		return nil, err
	}
	s.privacy.forget(p.UserID)
	pr, err := s.privacy.get(ctx, p.UserID)
	if err != nil {
		return nil, s.unavailable(ctx, "read privacy", err)
	}
	return &presencev1.GetPresencePrivacyResponse{Visibility: pr.visibility, AllowedUserIds: pr.list()}, nil
}

// Online is the number of device keys this instance's view holds, for metrics and tests.
func (s *Server) Online() int { return s.view.online() }
