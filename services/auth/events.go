package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// BusEvents publishes Events on NATS: removals, deletions and low-prekey notices go to the
// durable JetStream stream (consumers must not miss them), device-list changes go out as
// core NATS messages that only invalidate caches.
type BusEvents struct {
	nc *nats.Conn
	b  *bus.Bus
}

// NewBusEvents creates the auth event stream if needed and returns a publisher.
func NewBusEvents(ctx context.Context, b *bus.Bus) (*BusEvents, error) {
	if err := b.EnsureAuthEvents(ctx); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return &BusEvents{nc: b.Conn(), b: b}, nil
}

func (e *BusEvents) persist(ctx context.Context, subject string, m proto.Message) error {
	data, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	// Through the bus, so the event carries the trace of the call that caused it.
	return e.b.Publish(ctx, subject, data)
}

// DevicesChanged implements Events.
func (e *BusEvents) DevicesChanged(_ context.Context, userID string) error {
	data, err := proto.Marshal(&eventsv1.DevicesChanged{UserId: userID})
	if err != nil {
		return err
	}
	return e.nc.Publish(bus.SubjectDevicesChanged, data)
}

// DeviceRemoved implements Events.
func (e *BusEvents) DeviceRemoved(ctx context.Context, userID string, deviceID uint32) error {
	return e.persist(ctx, bus.SubjectDeviceRemoved, &eventsv1.DeviceRemoved{UserId: userID, DeviceId: deviceID})
}

// AccountDeleted implements Events.
func (e *BusEvents) AccountDeleted(ctx context.Context, userID string, deviceIDs []uint32) error {
	return e.persist(ctx, bus.SubjectAccountDeleted, &eventsv1.AccountDeleted{UserId: userID, DeviceIds: deviceIDs})
}

// PreKeysLow implements Events.
func (e *BusEvents) PreKeysLow(ctx context.Context, userID string, deviceID uint32, ecLeft, kemLeft int) error {
	return e.persist(ctx, bus.SubjectPrekeysLow, &eventsv1.PreKeysLow{
		UserId: userID, DeviceId: deviceID, OneTimeEcPrekeys: uint32(ecLeft), OneTimeKemPrekeys: uint32(kemLeft),
	})
}

// Bounds of the directory responder.
const (
	// DirectoryWorkers bounds the device-list requests answered at once. Requests are
	// independent reads, so a slow store (a TiKV round trip) delays one worker, not the
	// queue behind it; beyond the bound, requests wait in the subscription's pending
	// buffer.
	DirectoryWorkers = 8
	// MaxDirectoryBatch bounds the users of one request (DeviceListRequest.user_ids).
	MaxDirectoryBatch = 256
	// directoryTimeout bounds the store read of one request.
	directoryTimeout = 5 * time.Second
)

// Stable reasons in DeviceListResponse.error.
const (
	reasonDirectoryMalformed = "malformed device list request"
	reasonDirectoryFailed    = "directory lookup failed"
)

// DirectoryResponder answers device-list requests until Unsubscribe.
type DirectoryResponder struct {
	sub     *nats.Subscription
	workers chan struct{} // a token per request being answered

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// Unsubscribe stops taking requests and waits for those being answered.
func (r *DirectoryResponder) Unsubscribe() error {
	err := r.sub.Unsubscribe()
	r.mu.Lock()
	r.stopped = true // a message the subscription is still handing over is dropped
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// ServeDirectory answers device-list requests from other services (the messaging service
// checks every send against the recipient's current devices) until the responder is
// unsubscribed: up to DirectoryWorkers requests at once, each for one user or a batch of
// up to MaxDirectoryBatch read in one transaction.
func (s *Server) ServeDirectory(nc *nats.Conn) (*DirectoryResponder, error) {
	r := &DirectoryResponder{workers: make(chan struct{}, DirectoryWorkers)}
	sub, err := nc.QueueSubscribe(bus.SubjectDirectoryDevices, "auth", func(m *nats.Msg) {
		// The subscription delivers one message at a time; waiting here for a worker is
		// the bound, and a goroutine per request lets a slow read overlap the next.
		r.mu.Lock()
		if r.stopped {
			r.mu.Unlock()
			return
		}
		r.wg.Add(1)
		r.mu.Unlock()
		r.workers <- struct{}{}
		go func() {
			defer func() { <-r.workers; r.wg.Done() }()
			s.answerDirectory(m)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("auth: serve directory: %w", err)
	}
	r.sub = sub
	return r, nil
}

// answerDirectory answers one device-list request.
func (s *Server) answerDirectory(m *nats.Msg) {
	resp := s.directoryReply(m.Data)
	data, err := proto.Marshal(resp)
	if err == nil {
		err = m.Respond(data)
	}
	if err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		s.log.Warn("auth: directory reply failed", slog.Any("err", err))
	}
}

// directoryReply decodes a DeviceListRequest (untrusted bytes from the bus) and answers it;
// a malformed request is answered with reasonDirectoryMalformed without reading the store.
func (s *Server) directoryReply(data []byte) *eventsv1.DeviceListResponse {
	var req eventsv1.DeviceListRequest
	if err := proto.Unmarshal(data, &req); err != nil || !validDirectoryRequest(&req) {
		return &eventsv1.DeviceListResponse{Error: reasonDirectoryMalformed}
	}
	users := req.GetUserIds()
	if req.GetUserId() != "" {
		users = []string{req.GetUserId()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), directoryTimeout)
	defer cancel()
	lists, err := s.DeviceLists(ctx, users)
	if err != nil {
		s.log.Error("auth: directory lookup failed", slog.Any("err", err))
		return &eventsv1.DeviceListResponse{Error: reasonDirectoryFailed}
	}
	if req.GetUserId() != "" {
		return &eventsv1.DeviceListResponse{Found: len(lists[0]) > 0, DeviceIds: lists[0]}
	}
	resp := &eventsv1.DeviceListResponse{Lists: make([]*eventsv1.DeviceList, len(lists))}
	for i, ids := range lists {
		resp.Lists[i] = &eventsv1.DeviceList{Found: len(ids) > 0, DeviceIds: ids}
	}
	return resp
}

// validDirectoryRequest reports whether req names one user or a batch, within bounds.
func validDirectoryRequest(req *eventsv1.DeviceListRequest) bool {
	one, batch := req.GetUserId(), req.GetUserIds()
	if (one == "") == (len(batch) == 0) || len(one) > 64 || len(batch) > MaxDirectoryBatch {
		return false
	}
	for _, u := range batch {
		if u == "" || len(u) > 64 {
			return false
		}
	}
	return true
}
