// Package messaging is Guardyn's store-and-forward service for end-to-end encrypted
// messages: per-device inboxes of sealed envelopes, live delivery streams with
// acknowledgements, ephemeral signals that are never stored, and the MLS delivery service
// that orders group handshakes. It never sees plaintext. The API is
// proto/guardyn/messaging/v1.
package messaging

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/directory"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/outbox"
	"github.com/guardyn/guardyn/libs/server"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// Defaults for Config fields left zero.
const (
	DefaultMessageTTL = 30 * 24 * time.Hour
	// DefaultInboxLimit bounds the undelivered messages of one device.
	DefaultInboxLimit = 10000
	// DefaultWindow bounds the deliveries a Receive stream has sent but not seen acked.
	DefaultWindow = 1024
	// DefaultCommitFanOutBytes bounds what one accepted commit stores: the commit once in
	// the group log, a notice per recipient device, the Welcome once, its notices and the
	// GroupInfo.
	DefaultCommitFanOutBytes = 64 << 20
	// MaxGroupDevices bounds the member devices of a group, as CreateGroup bounds its
	// initial members.
	MaxGroupDevices = 1000
)

// Directory tells which devices an account has right now (the auth service owns that);
// libs/directory implements it. An error wrapping directory.ErrUnavailable is answered
// as Unavailable. If it also has a Forget(userID string) method, the auth events call it.
type Directory interface {
	// Devices returns the current device ids of a user in ascending order, and false when
	// no such account exists.
	Devices(ctx context.Context, userID string) ([]uint32, bool, error)
}

// Limiter rate-limits by key; Allow reports whether one more event may happen now, AllowN
// whether an amount n (bytes) may pass now, and Debit charges an amount known only after
// the fact, which may leave the key refused until it is paid back (libs/ratelimit).
type Limiter interface {
	Allow(key string) bool
	AllowN(key string, n int) bool
	Debit(key string, n int)
}

// Config holds the dependencies of a Server.
type Config struct {
	// Inboxes holds every device's undelivered messages.
	Inboxes msgstore.Store
	// Groups holds the MLS delivery-service registry (epochs, members, Welcomes).
	Groups    kv.Store
	Directory Directory
	// Revocations, if set, answers with authority whether a device was removed; open
	// streams ask it every revocationRecheck besides the Directory's cache, so a removal
	// ends them even when no change event reached the cache. The all-in-one server
	// passes the auth store.
	Revocations authn.Revocations
	// Conn carries live events between messaging instances (NATS).
	Conn *nats.Conn

	Limits Limiter // optional
	Now    func() time.Time
	Logger *slog.Logger

	MessageTTL time.Duration
	InboxLimit int
	Window     int
	// CommitFanOutBytes: see DefaultCommitFanOutBytes.
	CommitFanOutBytes int64
	// StreamRecheck is how often open Receive streams are checked against Revocations
	// (or the Directory), so a removal ends them even if its Removed event was lost
	// (0: DefaultStreamRecheck; negative: never).
	StreamRecheck time.Duration
}

// DefaultStreamRecheck bounds how long an open Receive stream outlives its device's removal
// when the Removed event is lost: 100 000 streams cost about 3 300 revocation checks a
// second.
const DefaultStreamRecheck = 30 * time.Second

// Server implements messagingv1.MessagingServiceServer.
type Server struct {
	messagingv1.UnimplementedMessagingServiceServer

	inboxes msgstore.Store
	groups  kv.Store
	dir     Directory
	revoked authn.Revocations // nil: ask dir
	conn    *nats.Conn
	limits  Limiter
	now     func() time.Time
	log     *slog.Logger
	ttl     time.Duration
	cap     int
	window  int
	hub     *hub
	sub     *nats.Subscription

	commitBytes int64
	// fanouts holds accepted commits' fan-outs until every inbox has them; a replayer
	// runs from New to Close.
	fanouts     *outbox.Outbox
	stopReplay  context.CancelFunc
	replayEnded chan struct{}

	stop    chan struct{} // closed by Close: ends the stream recheck
	stopped sync.Once
	checked sync.WaitGroup
}

// New returns a Server and subscribes it to live events; Close unsubscribes.
func New(cfg Config) (*Server, error) {
	if cfg.Inboxes == nil || cfg.Groups == nil || cfg.Directory == nil || cfg.Conn == nil {
		return nil, errors.New("messaging: config needs Inboxes, Groups, Directory and Conn")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		inboxes: cfg.Inboxes, groups: cfg.Groups, dir: cfg.Directory, revoked: cfg.Revocations, conn: cfg.Conn,
		limits: cfg.Limits, now: cfg.Now, log: cfg.Logger,
		ttl: cfg.MessageTTL, cap: cfg.InboxLimit, window: cfg.Window,
		hub: newHub(),
	}
	if s.ttl == 0 {
		s.ttl = DefaultMessageTTL
	}
	if s.cap == 0 {
		s.cap = DefaultInboxLimit
	}
	if s.window == 0 {
		s.window = DefaultWindow
	}
	s.commitBytes = cfg.CommitFanOutBytes
	if s.commitBytes == 0 {
		s.commitBytes = DefaultCommitFanOutBytes
	}
	fanouts, err := s.newFanOuts(cfg.Groups)
	if err != nil {
		return nil, fmt.Errorf("messaging: %w", err)
	}
	s.fanouts = fanouts
	sub, err := cfg.Conn.Subscribe(bus.SubjectDeliverAll, s.onLiveEvent)
	if err != nil {
		return nil, fmt.Errorf("messaging: subscribe to live events: %w", err)
	}
	// Live events are wake-ups backed by the inbox, so a slow consumer may drop them;
	// the pending limits only bound memory.
	if err := sub.SetPendingLimits(1<<20, 256<<20); err != nil {
		return nil, fmt.Errorf("messaging: live event limits: %w", err)
	}
	s.sub = sub
	// The replayer delivers the fan-outs a crash left behind, then retries failed ones.
	ctx, stop := context.WithCancel(context.Background())
	s.stopReplay, s.replayEnded = stop, make(chan struct{})
	go func() {
		defer close(s.replayEnded)
		_ = s.fanouts.Run(ctx)
	}()
	s.stop = make(chan struct{})
	if cfg.StreamRecheck == 0 {
		cfg.StreamRecheck = DefaultStreamRecheck
	}
	if cfg.StreamRecheck > 0 {
		s.checked.Add(1)
		go s.recheckStreams(cfg.StreamRecheck)
	}
	s.startStreamReports()
	s.checked.Add(1)
	go s.sweepEvery(welcomeSweepInterval)
	return s, nil
}

// Close stops receiving live events, replaying fan-outs, sweeping expired Welcomes and
// rechecking streams. Streams end when the gRPC server stops.
func (s *Server) Close() error {
	s.stopReplay()
	<-s.replayEnded
	s.stopped.Do(func() { close(s.stop) })
	s.checked.Wait()
	return s.sub.Unsubscribe()
}

// recheckStreams ends, every interval, the open Receive streams of devices that have been
// removed: the Removed live event that normally ends them at once travels on core NATS
// between instances and can be lost.
func (s *Server) recheckStreams(interval time.Duration) {
	defer s.checked.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		for key, st := range s.hub.snapshot() {
			select {
			case <-s.stop:
				return
			default:
			}
			// An outage answers nothing here: the stream stays, and the next round asks
			// again (logging each stream would flood the log).
			if s.removedNow(st.ctx, key) {
				st.fail(errDeviceRemoved())
			}
		}
	}
}

func caller(ctx context.Context) (authn.Principal, error) {
	p, ok := authn.FromContext(ctx)
	if !ok {
		return p, server.Error(codes.Unauthenticated, "TOKEN_MISSING", "missing access token")
	}
	return p, nil
}

func (s *Server) allow(action, key string) error {
	if s.limits == nil || s.limits.Allow(action+"|"+key) {
		return nil
	}
	return server.Error(codes.ResourceExhausted, reasonRateLimited, "too many %s requests; retry later", action)
}

// allowBytes applies a limit on amounts: the sealed bytes a caller sends, so that the
// request limit is not a licence to send thousands of the largest requests a second.
func (s *Server) allowBytes(action, key string, n int) error {
	if s.limits == nil || n == 0 || s.limits.AllowN(action+"|"+key, n) {
		return nil
	}
	return server.Error(codes.ResourceExhausted, reasonRateLimited, "too many bytes sent; retry later")
}

// allowDeliveryBytes applies the byte budget of one sender account towards one recipient
// device ("deliver-bytes"), far below the sender's own allowance ("send-bytes"): what one
// device can receive and the server deliver to it is shared by everyone who writes to it,
// so no one sender may take all of it. Without it, one account filled two honest inboxes
// with 16 MiB a second and the deliveries' bytes cost every other pair a fifth of its
// throughput (issue 18, inbox jam).
func (s *Server) allowDeliveryBytes(p authn.Principal, recipient string, device uint32, n int) error {
	if s.limits == nil || n == 0 || s.limits.AllowN("deliver-bytes|"+p.UserID+">"+recipient+"/"+strconv.FormatUint(uint64(device), 10), n) {
		return nil
	}
	return server.Error(codes.ResourceExhausted, reasonRateLimited, "too many bytes sent to device %d of %q; retry later", device, recipient)
}

// allowGroupBytes applies the byte limits of sends to a group message of n bytes stored
// for the devices to: n against the sender's send-bytes, as one-to-one sends count their
// envelopes, and each copy against the sender's deliver-bytes towards that device, so that
// a group is no way around either.
func (s *Server) allowGroupBytes(p authn.Principal, to []member, n int) error {
	if err := s.allowBytes("send-bytes", p.UserID, n); err != nil {
		return err
	}
	for _, m := range to {
		if err := s.allowDeliveryBytes(p, m.UserID, m.DeviceID, n); err != nil {
			return err
		}
	}
	return nil
}

// sealedBytes is the payload a send stores: its sealed envelopes.
func sealedBytes(req *messagingv1.SendMessageRequest) int {
	return sumSealed(req.GetEnvelopes())
}

// sumSealed is the total size of envs' sealed envelopes.
func sumSealed(envs []*messagingv1.DeviceEnvelope) int {
	n := 0
	for _, e := range envs {
		n += len(e.GetSealedEnvelope())
	}
	return n
}

func (s *Server) internal(ctx context.Context, op string, err error) error {
	if errors.Is(err, kv.ErrUnavailable) {
		s.log.WarnContext(ctx, "messaging: kv store unavailable", "op", op, "err", err)
		return server.Error(codes.Unavailable, server.ReasonStoreUnavailable, "%s: store unavailable; retry", op)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	if errors.Is(err, msgstore.ErrFull) {
		return server.Error(codes.ResourceExhausted, reasonInboxFull, "%s: an inbox holds its maximum of undelivered messages", op)
	}
	if errors.Is(err, msgstore.ErrUnavailable) {
		s.log.WarnContext(ctx, "messaging: message store unavailable", "op", op, "err", err)
		return server.Error(codes.Unavailable, reasonStoreUnavailable, "%s: message store unavailable; retry", op)
	}
	s.log.ErrorContext(ctx, "messaging: failure", "op", op, "err", err)
	return server.Error(codes.Internal, server.ReasonInternal, "%s failed", op)
}

// directoryError maps a failed device-list lookup: an unreachable directory is a
// temporary Unavailable the client retries, never a verdict about the device.
func (s *Server) directoryError(ctx context.Context, err error) error {
	if errors.Is(err, directory.ErrUnavailable) && ctx.Err() == nil {
		s.log.WarnContext(ctx, "messaging: device directory unavailable", "err", err)
		return server.Error(codes.Unavailable, reasonDirectoryUnavailable, "device directory unavailable; retry")
	}
	return s.internal(ctx, "device directory", err)
}

func inboxOf(userID string, deviceID uint32) msgstore.Inbox {
	return msgstore.Inbox{UserID: userID, DeviceID: strconv.FormatUint(uint64(deviceID), 10)}
}

// messageID derives the inbox id of one delivery from who sent it, the sender's
// idempotency key, the recipient device and the scope it was sent in (empty for one-to-one
// messages; the delivery kind and group id for group traffic), so a retried send maps to
// the same ids and the store's idempotent Append makes it a no-op, while the same key used
// in two groups gives two messages.
func messageID(sender authn.Principal, scope, clientMessageID []byte, recipient string, device uint32) msgstore.ID {
	h := sha256.New()
	h.Write([]byte("guardyn message id v2\x00"))
	for _, part := range [][]byte{[]byte(sender.UserID), scope, clientMessageID, []byte(recipient)} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var devs [8]byte
	binary.BigEndian.PutUint32(devs[:4], sender.DeviceID)
	binary.BigEndian.PutUint32(devs[4:], device)
	h.Write(devs[:])
	var id msgstore.ID
	copy(id[:], h.Sum(nil))
	return id
}

// SendMessage stores one envelope per recipient device and wakes the online ones.
func (s *Server) SendMessage(ctx context.Context, req *messagingv1.SendMessageRequest) (*messagingv1.SendMessageResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("send", p.UserID); err != nil {
		return nil, err
	}
	if err := s.allowBytes("send-bytes", p.UserID, sealedBytes(req)); err != nil {
		return nil, err
	}
	return s.send(ctx, p, req)
}

// send is SendMessage after authentication.
func (s *Server) send(ctx context.Context, p authn.Principal, req *messagingv1.SendMessageRequest) (*messagingv1.SendMessageResponse, error) {
	ps, err := s.prepare(ctx, p, req, nil)
	if err != nil {
		return nil, err
	}
	if err := s.store(ctx, ps.msgs); err != nil {
		return nil, err
	}
	s.wakeSent(ctx, ps)
	return ps.resp, nil
}

// preparedSend is a validated send whose messages are ready to be stored.
type preparedSend struct {
	recipient string
	msgs      []msgstore.Message
	resp      *messagingv1.SendMessageResponse
}

// prepare validates a send and builds one inbox message per envelope. queued counts the
// messages per inbox already prepared for the same Append, so that a batch cannot push an
// inbox past its cap; it is updated, and may be nil for a send stored on its own.
func (s *Server) prepare(ctx context.Context, p authn.Principal, req *messagingv1.SendMessageRequest, queued map[msgstore.Inbox]int) (*preparedSend, error) {
	if len(req.GetClientMessageId()) != 16 {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "client_message_id must be 16 bytes")
	}
	if err := s.checkDeviceList(ctx, p, req.GetRecipientUserId(), req.GetEnvelopes()); err != nil {
		return nil, err
	}
	for _, env := range req.GetEnvelopes() {
		if err := s.allowDeliveryBytes(p, req.GetRecipientUserId(), env.GetDeviceId(), len(env.GetSealedEnvelope())); err != nil {
			return nil, err
		}
	}
	now := s.now()
	ps := &preparedSend{
		recipient: req.GetRecipientUserId(),
		msgs:      make([]msgstore.Message, len(req.GetEnvelopes())),
		resp:      &messagingv1.SendMessageResponse{Stored: make([]*messagingv1.StoredEnvelope, len(req.GetEnvelopes())), ServerTime: timestamppb.New(now)},
	}
	for i, env := range req.GetEnvelopes() {
		inbox := inboxOf(req.GetRecipientUserId(), env.GetDeviceId())
		n, err := s.inboxes.Count(ctx, inbox)
		if err != nil {
			return nil, s.internal(ctx, "count inbox", err)
		}
		if n+queued[inbox] >= s.cap {
			return nil, server.Error(codes.ResourceExhausted, reasonInboxFull, "device %d's inbox holds its maximum of %d undelivered messages", env.GetDeviceId(), s.cap)
		}
		id := messageID(p, nil, req.GetClientMessageId(), req.GetRecipientUserId(), env.GetDeviceId())
		ps.msgs[i] = msgstore.Message{
			Inbox: inbox, ID: id, Kind: msgstore.Kind(messagingv1.DeliveryKind_DELIVERY_KIND_MESSAGE),
			Body: env.GetSealedEnvelope(), Timestamp: now, Expiry: now.Add(s.ttl),
		}
		ps.resp.Stored[i] = &messagingv1.StoredEnvelope{DeviceId: env.GetDeviceId(), MessageId: id[:]}
	}
	if queued != nil {
		for _, m := range ps.msgs {
			queued[m.Inbox]++
		}
	}
	return ps, nil
}

// store makes msgs durable, in as few Append calls as the store's limits allow.
func (s *Server) store(ctx context.Context, msgs []msgstore.Message) error {
	for _, batch := range appendBatches(msgs) {
		if err := s.inboxes.Append(ctx, batch); err != nil {
			return s.internal(ctx, "store messages", err)
		}
	}
	return nil
}

// wakeSent hands a stored send's deliveries to the recipient devices' live streams.
func (s *Server) wakeSent(ctx context.Context, ps *preparedSend) {
	for i, m := range ps.msgs {
		s.wake(ctx, ps.recipient, ps.resp.Stored[i].GetDeviceId(), &messagingv1.Delivery{
			MessageId: ps.resp.Stored[i].GetMessageId(), Kind: messagingv1.DeliveryKind_DELIVERY_KIND_MESSAGE,
			Payload: m.Body, ServerTime: ps.resp.ServerTime,
		})
	}
}

// checkDeviceList verifies that envs address exactly the recipient's current devices
// (without the sending device when writing to one's own account).
func (s *Server) checkDeviceList(ctx context.Context, p authn.Principal, recipient string, envs []*messagingv1.DeviceEnvelope) error {
	if recipient == "" {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "recipient_user_id is empty")
	}
	if len(envs) == 0 {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "no envelopes")
	}
	addressed := make([]uint32, 0, len(envs))
	for _, e := range envs {
		if len(e.GetSealedEnvelope()) == 0 {
			return server.Error(codes.InvalidArgument, reasonMalformedRequest, "envelope for device %d is empty", e.GetDeviceId())
		}
		if recipient == p.UserID && e.GetDeviceId() == p.DeviceID {
			return server.Error(codes.InvalidArgument, reasonMalformedRequest, "an envelope is addressed to the sending device")
		}
		addressed = append(addressed, e.GetDeviceId())
	}
	slices.Sort(addressed)
	for i := 1; i < len(addressed); i++ {
		if addressed[i] == addressed[i-1] {
			return server.Error(codes.InvalidArgument, reasonMalformedRequest, "device %d is addressed twice", addressed[i])
		}
	}
	current, found, err := s.dir.Devices(ctx, recipient)
	if err != nil {
		return s.directoryError(ctx, err)
	}
	if !found {
		return server.Error(codes.NotFound, reasonUserNotFound, "no account %q", recipient)
	}
	if recipient == p.UserID {
		current = slices.DeleteFunc(slices.Clone(current), func(d uint32) bool { return d == p.DeviceID })
	}
	if slices.Equal(current, addressed) {
		return nil
	}
	mismatch := &messagingv1.DeviceListMismatch{CurrentDeviceIds: current}
	for _, d := range current {
		if _, ok := slices.BinarySearch(addressed, d); !ok {
			mismatch.MissingDeviceIds = append(mismatch.MissingDeviceIds, d)
		}
	}
	for _, d := range addressed {
		if _, ok := slices.BinarySearch(current, d); !ok {
			mismatch.ExtraDeviceIds = append(mismatch.ExtraDeviceIds, d)
		}
	}
	return staleDeviceList(mismatch)
}

func staleDeviceList(m *messagingv1.DeviceListMismatch) error {
	st, _ := status.FromError(server.Error(codes.FailedPrecondition, reasonStaleDeviceList,
		"the recipient's devices changed: missing %v, extra %v", m.GetMissingDeviceIds(), m.GetExtraDeviceIds()))
	withDetail, err := st.WithDetails(m)
	if err != nil {
		return st.Err()
	}
	return withDetail.Err()
}

// maxStreamInflight bounds the sends of one SendStream read but not yet answered.
const maxStreamInflight = 64

// SendStream runs many sends over one authenticated stream. One goroutine reads requests;
// another stores whatever has queued up meanwhile with one Append, so a busy stream pays
// for one group commit per batch instead of one per message, and answers in that order.
func (s *Server) SendStream(stream messagingv1.MessagingService_SendStreamServer) error {
	ctx := stream.Context()
	p, err := caller(ctx)
	if err != nil {
		return err
	}
	queue := make(chan queuedSend, maxStreamInflight)
	failed := make(chan struct{}) // closed when answering fails; the stream is over
	flow := newSendFlow()
	answered := make(chan error, 1)
	go func() { answered <- s.answerSends(ctx, p, stream, flow, queue, failed) }()
	err = s.readSends(ctx, p, stream, flow, queue, failed)
	close(queue)
	if answerErr := <-answered; err == nil {
		err = answerErr
	}
	return err
}

// queuedSend is a request read from a SendStream and, when the check of the sending
// device could not be made, the error to answer it with instead of sending it.
type queuedSend struct {
	req *messagingv1.SendStreamRequest
	err error
}

// readSends queues the stream's requests until the client closes its side, a check
// fails or answering fails, at the pace flow allows.
func (s *Server) readSends(ctx context.Context, p authn.Principal, stream messagingv1.MessagingService_SendStreamServer, flow *sendFlow, queue chan<- queuedSend, failed <-chan struct{}) error {
	rechecked := s.now() // the interceptor has just checked
	for {
		if !flow.waitHold(ctx, failed, s.now()) {
			return nil
		}
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		if err := s.allow("send", p.UserID); err != nil {
			return err
		}
		if err := s.allowBytes("send-bytes", p.UserID, sealedBytes(req.GetMessage())); err != nil {
			return err
		}
		// The token was checked when the stream opened; a device removed since must
		// not keep sending on it. The directory answers from its cache, the
		// authoritative check at most every revocationRecheck. When neither can answer
		// (an outage, or lookups timing out as thousands of devices start sending at
		// once), this request is answered UNAVAILABLE and not stored, and the stream
		// lives on: ending it would make every request in flight on it fail too.
		removed, err := s.deviceRemoved(ctx, p, &rechecked)
		if removed {
			return errDeviceRemoved()
		}
		if err := flow.queued.Acquire(ctx, queuedSize(req)); err != nil {
			return nil // the stream is over
		}
		select {
		case queue <- queuedSend{req: req, err: err}:
		case <-failed:
			flow.queued.Release(queuedSize(req))
			return nil
		}
	}
}

// answerSends stores and answers queued requests in batches until queue is closed. After
// a failed answer it closes failed and only drains the queue.
func (s *Server) answerSends(ctx context.Context, p authn.Principal, stream messagingv1.MessagingService_SendStreamServer, flow *sendFlow, queue <-chan queuedSend, failed chan<- struct{}) error {
	batch := make([]queuedSend, 0, maxStreamInflight)
	for req := range queue {
		batch = append(batch[:0], req)
	fill:
		for len(batch) < maxStreamInflight {
			select {
			case r, ok := <-queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		resps := s.sendBatch(ctx, p, batch)
		for _, resp := range resps {
			if err := stream.Send(resp); err != nil {
				close(failed)
				flow.release(batch)
				for r := range queue {
					flow.queued.Release(queuedSize(r.req))
				}
				return err
			}
		}
		flow.answered(batch, resps, s.now())
	}
	return nil
}

// sendBatch performs the sends of reqs with one store call and returns their responses in
// order. A send that fails its checks gets its error without holding up the others.
func (s *Server) sendBatch(ctx context.Context, p authn.Principal, reqs []queuedSend) []*messagingv1.SendStreamResponse {
	out := make([]*messagingv1.SendStreamResponse, len(reqs))
	prepared := make([]*preparedSend, len(reqs))
	queued := make(map[msgstore.Inbox]int, len(reqs))
	var msgs []msgstore.Message
	for i, q := range reqs {
		out[i] = &messagingv1.SendStreamResponse{RequestId: q.req.GetRequestId()}
		if q.err != nil {
			out[i].Result = &messagingv1.SendStreamResponse_Error{Error: sendError(q.err)}
			continue
		}
		ps, err := s.prepare(ctx, p, q.req.GetMessage(), queued)
		if err != nil {
			out[i].Result = &messagingv1.SendStreamResponse_Error{Error: sendError(err)}
			continue
		}
		prepared[i] = ps
		msgs = append(msgs, ps.msgs...)
	}
	err := s.store(ctx, msgs)
	for i, ps := range prepared {
		switch {
		case ps == nil:
		case err != nil:
			out[i].Result = &messagingv1.SendStreamResponse_Error{Error: sendError(err)}
		default:
			s.wakeSent(ctx, ps)
			out[i].Result = &messagingv1.SendStreamResponse_Sent{Sent: ps.resp}
		}
	}
	return out
}

// removedNow reports whether the device of key is known to be removed, from Revocations
// or else the Directory; false when neither can answer.
func (s *Server) removedNow(ctx context.Context, key inboxKey) bool {
	if s.revoked != nil {
		removed, err := s.revoked.IsDeviceRevoked(ctx, key.user, key.device)
		return err == nil && removed
	}
	devices, found, err := s.dir.Devices(ctx, key.user)
	return err == nil && (!found || !slices.Contains(devices, key.device))
}

// revocationRecheck is how often an open stream asks Config.Revocations, the
// authoritative answer, whether its device was removed; in between it trusts the
// directory's cache, which change events keep current. A store read per message would
// cost the send path several microseconds.
const revocationRecheck = 250 * time.Millisecond

// deviceRemoved reports whether the caller's device has left its account: from
// Config.Revocations when *rechecked is revocationRecheck old (then updated), otherwise
// from the directory.
func (s *Server) deviceRemoved(ctx context.Context, p authn.Principal, rechecked *time.Time) (bool, error) {
	if now := s.now(); s.revoked != nil && now.Sub(*rechecked) >= revocationRecheck {
		removed, err := s.revoked.IsDeviceRevoked(ctx, p.UserID, p.DeviceID)
		if err != nil {
			return false, s.directoryError(ctx, fmt.Errorf("%w: %w", directory.ErrUnavailable, err))
		}
		*rechecked = now
		if removed {
			return true, nil
		}
	}
	devices, found, err := s.dir.Devices(ctx, p.UserID)
	if err != nil {
		return false, s.directoryError(ctx, err)
	}
	return !found || !slices.Contains(devices, p.DeviceID), nil
}

// sendError turns a send's status error into its stream form.
func sendError(err error) *messagingv1.SendError {
	st := status.Convert(err)
	out := &messagingv1.SendError{Code: uint32(st.Code()), Reason: server.Reason(err), Message: st.Message()}
	for _, d := range st.Details() {
		if m, ok := d.(*messagingv1.DeviceListMismatch); ok {
			out.DeviceListMismatch = m
		}
	}
	return out
}

// SendEphemeral forwards a signal to the recipient's online devices without storing it.
func (s *Server) SendEphemeral(ctx context.Context, req *messagingv1.SendEphemeralRequest) (*messagingv1.SendEphemeralResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("ephemeral", p.UserID); err != nil {
		return nil, err
	}
	if err := s.checkDeviceList(ctx, p, req.GetRecipientUserId(), req.GetEnvelopes()); err != nil {
		return nil, err
	}
	// Signals are never stored but take the recipient's delivery bandwidth all the same.
	if err := s.allowBytes("send-bytes", p.UserID, sumSealed(req.GetEnvelopes())); err != nil {
		return nil, err
	}
	for _, env := range req.GetEnvelopes() {
		if err := s.allowDeliveryBytes(p, req.GetRecipientUserId(), env.GetDeviceId(), len(env.GetSealedEnvelope())); err != nil {
			return nil, err
		}
	}
	now := timestamppb.New(s.now())
	for _, env := range req.GetEnvelopes() {
		s.wake(ctx, req.GetRecipientUserId(), env.GetDeviceId(), &messagingv1.Delivery{
			Kind: messagingv1.DeliveryKind_DELIVERY_KIND_EPHEMERAL, Payload: env.GetSealedEnvelope(), ServerTime: now,
		})
	}
	return &messagingv1.SendEphemeralResponse{ServerTime: now}, nil
}

// AckMessages deletes acknowledged messages and frees the stream's window.
func (s *Server) AckMessages(ctx context.Context, req *messagingv1.AckMessagesRequest) (*messagingv1.AckMessagesResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("ack", p.UserID); err != nil {
		return nil, err
	}
	ids, err := messageIDs(req.GetMessageIds())
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return &messagingv1.AckMessagesResponse{}, nil
	}
	if err := s.inboxes.Delete(ctx, inboxOf(p.UserID, p.DeviceID), ids); err != nil {
		return nil, s.internal(ctx, "delete acknowledged messages", err)
	}
	s.publish(ctx, p.UserID, p.DeviceID, &eventsv1.LiveEvent{Event: &eventsv1.LiveEvent_Acked{Acked: &eventsv1.Acked{MessageIds: req.GetMessageIds()}}})
	return &messagingv1.AckMessagesResponse{}, nil
}

// wake publishes a delivery to the device's live stream, wherever it is connected.
func (s *Server) wake(ctx context.Context, userID string, deviceID uint32, d *messagingv1.Delivery) {
	s.publish(ctx, userID, deviceID, &eventsv1.LiveEvent{Event: &eventsv1.LiveEvent_Delivery{Delivery: d}})
	s.noticeIfAway(ctx, userID, deviceID, d.GetKind())
}

// publish sends a live event to the device's stream: directly when the stream is on this
// instance, otherwise over NATS to whichever instance holds it. A lost event delays
// nothing that matters: stored messages are in the inbox and the stream reads it again
// when its window frees up.
func (s *Server) publish(ctx context.Context, userID string, deviceID uint32, ev *eventsv1.LiveEvent) {
	if st := s.hub.get(inboxKey{userID, deviceID}); st != nil {
		st.offer(ctx, ev)
		return
	}
	subject, err := bus.DeliverSubject(userID, deviceID)
	if err != nil {
		s.log.WarnContext(ctx, "messaging: live event not published", "err", err)
		return
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		s.log.ErrorContext(ctx, "messaging: encode live event", "err", err)
		return
	}
	msg := &nats.Msg{Subject: subject, Data: data}
	if trace.SpanContextFromContext(ctx).IsSampled() {
		// The receiving instance continues the sender's trace (receive.go, traceDelivery).
		msg.Header = nats.Header{}
		observe.InjectHeader(ctx, msg.Header)
	}
	if err := s.conn.PublishMsg(msg); err != nil {
		s.log.WarnContext(ctx, "messaging: publish live event", "err", err)
	}
}

// onLiveEvent dispatches a live event from NATS to the local stream of its device.
func (s *Server) onLiveEvent(m *nats.Msg) {
	key, ok := parseDeliverSubject(m.Subject)
	if !ok {
		return
	}
	st := s.hub.get(key)
	if st == nil {
		return
	}
	var ev eventsv1.LiveEvent
	if err := proto.Unmarshal(m.Data, &ev); err != nil {
		s.log.Warn("messaging: malformed live event dropped", "subject", m.Subject, "err", err)
		return
	}
	st.offer(observe.ExtractHeader(context.Background(), m.Header), &ev)
}
