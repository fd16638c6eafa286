package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/crypto/envelope"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/session"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	// EventMessage is a text message (from a contact, or a copy of one this account sent
	// from another device when Outgoing is set).
	EventMessage EventKind = iota + 1
	// EventReceipt says a device of Peer received message Ref (one event per message a
	// receipt acknowledges).
	EventReceipt
	// EventTyping says Peer is typing.
	EventTyping
	// EventIdentityChanged is the loud warning that Peer's identity changed; their messages
	// are held on the server (not decrypted, not acknowledged) until Trust.
	EventIdentityChanged
	// EventUndecryptable reports a delivery that could not be authenticated or decrypted
	// and was dropped; Err says why.
	EventUndecryptable
	// EventBacklogDone marks the end of the stored backlog; later events are live.
	EventBacklogDone
	// EventWarning reports a problem that did not stop listening (a receipt or prekey
	// top-up that failed); Err says what.
	EventWarning
	// EventNewDevice says contact Peer has a device this device had not seen (FromDevice,
	// with its key Fingerprint): the safety number changed. Its messages are still read.
	EventNewDevice
	// EventNewOwnDevice says this account has a device FromDevice that this device did not
	// approve; Listen reports it at start until Trust of one's own username or its removal.
	EventNewOwnDevice
	// EventDisconnected says the delivery stream broke (Err says why: the server went away or
	// is shutting down); Listen keeps reconnecting, and nothing is lost meanwhile.
	EventDisconnected
	// EventReconnected says the stream is back after an EventDisconnected.
	EventReconnected
	// EventFile is a shared file (File says what and how to fetch it; GetFile saves it),
	// from a contact or, with Outgoing, a copy of one this account sent.
	EventFile
	// EventGroupJoined says this device joined Group (or learned its name).
	EventGroupJoined
	// EventGroupChanged says From committed a change to Group (members added or removed,
	// keys updated); Body says the new epoch and size.
	EventGroupChanged
	// EventGroupRemoved says From removed this device from Group: it can read nothing
	// sent there any more.
	EventGroupRemoved
	// EventStatusKey says Peer shared the key of their presence status text.
	EventStatusKey
)

// Event is something Listen reports.
type Event struct {
	Kind EventKind
	// Peer is the other party of the conversation.
	Peer string
	// From and FromDevice name the sending account and device.
	From       string
	FromDevice uint32
	// Outgoing marks a copy of a message this account sent from another device.
	Outgoing bool
	ID       content.ID
	Ref      content.ID
	Body     string
	// Sent is the sender's clock; Received is when the server accepted the message.
	Sent, Received time.Time
	// Group is the group of a group event or message (Peer names it too).
	Group string
	// Fingerprint is the identity key fingerprint of a new device.
	Fingerprint string
	Err         error

	// File is the shared file of an EventFile.
	File *content.File
}

// newDeviceEvent reports a new device; Received is when this device learned of it.
func newDeviceEvent(nd NewDevice) Event {
	kind := EventNewDevice
	if nd.OwnAccount {
		kind = EventNewOwnDevice
	}
	return Event{Kind: kind, Peer: nd.Username, From: nd.Username, FromDevice: nd.DeviceID, Fingerprint: nd.Fingerprint, Received: nd.Seen}
}

// outcome is what happened to one stored delivery.
type outcome int

const (
	processed outcome = iota // persisted: acknowledge
	dropped                  // permanently unreadable or a duplicate: acknowledge
	held                     // from an untrusted changed identity: leave it on the server
)

// Listen opens the device's delivery stream and reports events to handle until ctx ends
// (or, with once, until the stored backlog is processed). Each batch of deliveries is
// decrypted, and the new session state and messages are saved, before it is acknowledged:
// a crash at any point loses nothing, and redeliveries are dropped by server message id.
// Text messages from contacts are answered with delivery receipts. Prekeys are topped up at
// the start, after handshakes consumed some, and when the server says they run low. Devices
// of this account that this device did not approve are reported at the start, and new
// devices of contacts or of the account when a message reveals them.
func (c *Client) Listen(ctx context.Context, once bool, handle func(Event)) error {
	unlock, err := c.vault.LockReceiver()
	if err != nil {
		if errors.Is(err, vault.ErrReceiverRunning) {
			return fmt.Errorf("%w: %w", ErrAlreadyListening, err)
		}
		return err
	}
	defer unlock()
	if _, _, err := c.ReplenishPreKeys(ctx); err != nil {
		return err
	}
	if _, err := c.ReplenishKeyPackages(ctx); err != nil {
		return err
	}
	var own []NewDevice
	if err := c.cycle(func(s *state) error {
		if _, err := c.syncOwnDevices(ctx, s); err != nil {
			return err
		}
		own = s.unverified(s.Username)
		return nil
	}); err != nil {
		return err
	}
	for _, nd := range own {
		handle(newDeviceEvent(nd))
	}
	disconnected := false
	connected := func() {
		if disconnected {
			disconnected = false
			handle(Event{Kind: EventReconnected, Received: c.now()})
		}
	}
	delay := reconnectMin
	for {
		err := c.listenOnce(ctx, once, handle, connected)
		if err == nil || ctx.Err() != nil || once || !reconnectable(err) {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// The server restarted, the connection dropped or the server asked us to wait:
		// reconnect; nothing is lost because unacknowledged messages stay in the inbox.
		if !disconnected {
			disconnected = true
			delay = reconnectMin
			handle(Event{Kind: EventDisconnected, Err: err, Received: c.now()})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, reconnectMax)
	}
}

// reconnectable reports whether Listen retries after err: the server restarted or the
// connection dropped (UNAVAILABLE), or it refused the stream for now (RESOURCE_EXHAUSTED:
// the device reconnected too often, or dropped deliveries unacknowledged and must wait
// until that is paid back).
func reconnectable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

// Reconnection backoff of Listen: quick after a restart, at most one attempt every few
// seconds while the server stays away.
const (
	reconnectMin = 500 * time.Millisecond
	reconnectMax = 8 * time.Second
)

// deliveryResponse is a response of either delivery stream: Receive's (native) or
// Subscribe's (a transport without request streams).
type deliveryResponse interface {
	GetDeliveries() []*messagingv1.Delivery
	GetBacklogComplete() bool
	GetPrekeysLow() *messagingv1.PreKeysLow
}

// listenOnce runs one delivery stream until it ends; connected is called once the stream
// is established.
func (c *Client) listenOnce(ctx context.Context, once bool, handle func(Event), connected func()) error {
	actx, err := c.freshBearer(ctx)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(actx)
	defer cancel()
	var (
		recv func() (deliveryResponse, error)
		ack  func(ids [][]byte) error
	)
	if c.unaryOnly || once {
		// Acknowledge by AckMessages, which returns once the server deleted: a one-shot
		// fetch ends its stream right after its last batch and wants each acknowledgement
		// confirmed, and a transport without request streams has no other way.
		ack = func(ids [][]byte) error { return c.ackMessages(ctx, ids) }
	}
	if c.unaryOnly {
		// Subscribe is Receive without the request side: the same backlog, windows and
		// redelivery of whatever is not acknowledged (docs/web.md).
		stream, err := c.msg.Subscribe(sctx, &messagingv1.SubscribeRequest{}, grpc.MaxCallRecvMsgSize(messagingv1.MaxReceiveResponseSize))
		if err != nil {
			return fmt.Errorf("client: subscribe: %w", err)
		}
		recv = func() (deliveryResponse, error) {
			resp, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					// A server stream ends only with an error; a clean end is the
					// connection's, so reconnect.
					err = status.Error(codes.Unavailable, "the server ended the delivery stream")
				}
				return nil, err
			}
			return resp, nil
		}
	} else {
		// Accept the largest response a server sends, whatever the connection's default.
		stream, err := c.msg.Receive(sctx, grpc.MaxCallRecvMsgSize(messagingv1.MaxReceiveResponseSize))
		if err != nil {
			return fmt.Errorf("client: receive: %w", err)
		}
		recv = func() (deliveryResponse, error) {
			resp, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			return resp, nil
		}
		if ack == nil {
			// A listener acknowledges on its stream: no call per batch. An acknowledgement
			// still queued when the stream ends is lost, and the message comes back and is
			// dropped as a duplicate.
			ack = func(ids [][]byte) error {
				for len(ids) > 0 {
					n := min(len(ids), maxAcksPerRequest)
					if err := stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: ids[:n]}); err != nil {
						if errors.Is(err, io.EOF) {
							// The server ended the stream; Recv says why (a restart is
							// UNAVAILABLE, on which Listen reconnects).
							for {
								if _, rerr := stream.Recv(); rerr != nil {
									return rerr
								}
							}
						}
						return err
					}
					ids = ids[n:]
				}
				return nil
			}
		}
	}
	for first := true; ; first = false {
		resp, err := recv()
		if err != nil {
			return fmt.Errorf("client: receive: %w", err)
		}
		if first {
			connected()
		}
		if len(resp.GetDeliveries()) > 0 {
			if err := c.handleBatch(ctx, resp.GetDeliveries(), handle, ack); err != nil {
				return err
			}
		}
		if resp.GetPrekeysLow() != nil {
			// The server says new contacts are draining our one-time prekeys: top up now
			// rather than when we next start.
			if _, _, err := c.ReplenishPreKeys(ctx); err != nil {
				handle(Event{Kind: EventWarning, Err: fmt.Errorf("prekey top-up failed: %w", err)})
			}
		}
		if resp.GetBacklogComplete() {
			handle(Event{Kind: EventBacklogDone})
			if once {
				return nil
			}
		}
	}
}

// ackMessages acknowledges ids with AckMessages calls of at most maxAcksPerRequest ids.
func (c *Client) ackMessages(ctx context.Context, ids [][]byte) error {
	for len(ids) > 0 {
		actx, err := c.freshBearer(ctx)
		if err != nil {
			return err
		}
		n := min(len(ids), maxAcksPerRequest)
		if _, err := c.msg.AckMessages(actx, &messagingv1.AckMessagesRequest{MessageIds: ids[:n]}); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// freshBearer returns ctx with a valid access token, saving the profile only when the
// token had to be refreshed.
func (c *Client) freshBearer(ctx context.Context) (context.Context, error) {
	s, err := c.view()
	if err != nil {
		return nil, err
	}
	if err := s.registered(); err != nil {
		return nil, err
	}
	if s.Tokens.Access != "" && c.now().Add(tokenMargin).Before(s.Tokens.AccessExpires) {
		return c.bearer(ctx, s)
	}
	var actx context.Context
	err = c.cycle(func(s *state) error {
		actx, err = c.bearer(ctx, s)
		return err
	})
	return actx, err
}

// batch is the result of processing a batch of deliveries in one cycle.
type batch struct {
	events   []Event
	acks     [][]byte
	senders  []string                // senders to send receipts to, in arrival order
	receipts map[string][]content.ID // text messages to acknowledge, per sender
	consumed bool                    // a handshake consumed one-time prekeys
	// consumedKeyPackage: a Welcome used one of this device's MLS key packages.
	consumedKeyPackage bool
}

func (b *batch) addReceipt(sender string, id content.ID) {
	if b.receipts == nil {
		b.receipts = make(map[string][]content.ID)
	}
	if _, ok := b.receipts[sender]; !ok {
		b.senders = append(b.senders, sender)
	}
	b.receipts[sender] = append(b.receipts[sender], id)
}

// maxAcksPerRequest is the most message ids one acknowledgement carries (the API's limit).
const maxAcksPerRequest = 1000

// handleBatch decrypts and saves a batch of deliveries, shows them, then acknowledges them
// with ack.
func (c *Client) handleBatch(ctx context.Context, deliveries []*messagingv1.Delivery, handle func(Event), ack func([][]byte) error) error {
	var b batch
	if err := c.cycle(func(s *state) error {
		b = batch{}
		return c.processBatch(ctx, s, deliveries, &b)
	}); err != nil {
		return err
	}
	// Saved: now it is safe to show and to acknowledge.
	for _, ev := range b.events {
		handle(ev)
	}
	if len(b.acks) > 0 {
		if err := ack(b.acks); err != nil {
			// Unacknowledged messages come back and are dropped as duplicates.
			return fmt.Errorf("client: acknowledge messages: %w", err)
		}
	}
	for _, sender := range b.senders {
		if err := c.sendReceipts(ctx, sender, b.receipts[sender]); err != nil {
			handle(Event{Kind: EventWarning, Peer: sender, Err: fmt.Errorf("delivery receipt not sent: %w", err)})
		}
	}
	if b.consumed {
		if _, _, err := c.ReplenishPreKeys(ctx); err != nil {
			handle(Event{Kind: EventWarning, Err: fmt.Errorf("prekey top-up failed: %w", err)})
		}
	}
	if b.consumedKeyPackage {
		if _, err := c.ReplenishKeyPackages(ctx); err != nil {
			handle(Event{Kind: EventWarning, Err: fmt.Errorf("key package top-up failed: %w", err)})
		}
	}
	return nil
}

func (c *Client) processBatch(ctx context.Context, s *state, deliveries []*messagingv1.Delivery, b *batch) error {
	id, err := s.identity()
	if err != nil {
		return err
	}
	pre, err := s.preKeys()
	if err != nil {
		return err
	}
	for _, d := range deliveries {
		switch d.GetKind() {
		case messagingv1.DeliveryKind_DELIVERY_KIND_EPHEMERAL:
			known := len(s.discovered)
			ev, ok := c.openEphemeral(ctx, s, id, d)
			for _, nd := range s.discovered[known:] {
				b.events = append(b.events, newDeviceEvent(nd))
			}
			if ok {
				b.events = append(b.events, ev)
			}
		case messagingv1.DeliveryKind_DELIVERY_KIND_MESSAGE:
			mid := hex.EncodeToString(d.GetMessageId())
			if s.seen(mid) {
				b.acks = append(b.acks, d.GetMessageId())
				continue
			}
			known := len(s.discovered)
			evs, out, err := c.openStored(ctx, s, id, pre, d, b)
			if err != nil {
				return err
			}
			for _, nd := range s.discovered[known:] {
				b.events = append(b.events, newDeviceEvent(nd))
			}
			b.events = append(b.events, evs...)
			if out != held {
				s.markSeen(mid)
				b.acks = append(b.acks, d.GetMessageId())
			}
		case messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE, messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT,
			messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_PROPOSAL, messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME:
			mid := hex.EncodeToString(d.GetMessageId())
			if !s.seen(mid) {
				if err := c.processGroup(ctx, s, d, b); err != nil {
					return err
				}
				s.markSeen(mid)
			}
			b.acks = append(b.acks, d.GetMessageId())
		default:
			// Deliveries of kinds this client does not know.
			b.events = append(b.events, Event{Kind: EventUndecryptable, Received: d.GetServerTime().AsTime(),
				Err: fmt.Errorf("unsupported delivery kind %s dropped", d.GetKind())})
			if len(d.GetMessageId()) > 0 {
				s.markSeen(hex.EncodeToString(d.GetMessageId()))
				b.acks = append(b.acks, d.GetMessageId())
			}
		}
	}
	if b.consumed {
		return s.setPreKeys(pre)
	}
	return nil
}

// openEphemeral opens a typing indicator. Anything that does not authenticate, comes from a
// changed identity, or is stale or a replay (see maxTypingSkew) is ignored: nothing is
// stored, so nothing is lost.
func (c *Client) openEphemeral(ctx context.Context, s *state, id *keys.Identity, d *messagingv1.Delivery) (Event, bool) {
	opened, err := envelope.Open(id.ECDH(), s.DeviceID, ed25519.PublicKey(s.TrustRoot), d.GetServerTime().AsTime(), d.GetPayload())
	if err != nil || opened.ContentType != envelope.ContentTyping {
		return Event{}, false
	}
	name, _, changed, err := c.resolveSender(ctx, s, opened.Sender)
	if err != nil || changed != nil {
		return Event{}, false
	}
	m, err := content.Decode(opened.Content)
	if err != nil || m.Kind != content.KindTyping || m.From != name || !c.typing.accept(m.ID, m.Sent, c.now()) {
		return Event{}, false
	}
	return Event{Kind: EventTyping, Peer: name, From: name, FromDevice: opened.Sender.DeviceID(), ID: m.ID, Sent: m.Sent, Received: d.GetServerTime().AsTime()}, true
}

// openStored authenticates, decrypts and records one stored delivery. It returns an error
// only for transient failures (the server unreachable while looking up a new sender), which
// abort the batch so that it is processed again later; everything permanent is an outcome.
func (c *Client) openStored(ctx context.Context, s *state, id *keys.Identity, pre *keys.PreKeyStore, d *messagingv1.Delivery, b *batch) ([]Event, outcome, error) {
	received := d.GetServerTime().AsTime()
	undecryptable := func(err error) ([]Event, outcome, error) {
		return []Event{{Kind: EventUndecryptable, Received: received, Err: err}}, dropped, nil
	}
	opened, err := envelope.Open(id.ECDH(), s.DeviceID, ed25519.PublicKey(s.TrustRoot), received, d.GetPayload())
	if errors.Is(err, envelope.ErrUnknownIssuer) {
		// Signed by a server key other than the pinned one: the server rotated its key, or
		// someone impersonates it. Either way a person must look; the message stays queued.
		return []Event{{Kind: EventWarning, Received: received, Err: fmt.Errorf("message held: %w; the server's certificate key differs from the one pinned at registration", err)}}, held, nil
	} else if err != nil {
		return undecryptable(err)
	}
	cert := opened.Sender
	certKey := cert.IdentityKey().Bytes()
	name, dev, changed, err := c.resolveSender(ctx, s, cert)
	if Reason(err) == "USER_NOT_FOUND" {
		return undecryptable(fmt.Errorf("sender account %s no longer exists", cert.UserID()))
	} else if errors.Is(err, errUnlistedDevice) {
		return undecryptable(err)
	} else if err != nil {
		return nil, 0, err
	}
	if changed != nil {
		return []Event{{Kind: EventIdentityChanged, Peer: name, From: name, FromDevice: cert.DeviceID(), Received: received, Err: changed}}, held, nil
	}

	pt, err := decryptFrom(id, pre, dev, opened, certKey, &b.consumed)
	if errors.Is(err, session.ErrDuplicate) {
		return nil, dropped, nil
	} else if err != nil {
		return undecryptable(fmt.Errorf("from %s device %d: %w", name, cert.DeviceID(), err))
	}
	m, err := content.Decode(pt)
	if err != nil {
		return undecryptable(fmt.Errorf("from %s device %d: %w", name, cert.DeviceID(), err))
	}
	if m.From != name {
		return undecryptable(fmt.Errorf("message claims to be from %q but %s device %d sent it", m.From, name, cert.DeviceID()))
	}
	ev := Event{Peer: name, From: name, FromDevice: cert.DeviceID(), ID: m.ID, Body: m.Body, Sent: m.Sent, Received: received, File: m.File}
	if cert.UserID() == s.UserID {
		if m.To == "" {
			return undecryptable(fmt.Errorf("copy from own device %d names no conversation", cert.DeviceID()))
		}
		ev.Peer, ev.Outgoing = m.To, true
	}
	entry := LogEntry{ID: m.ID.String(), Peer: ev.Peer, Outgoing: ev.Outgoing, Device: cert.DeviceID(), Kind: m.Kind, Body: m.Body, Sent: m.Sent, File: m.File}
	switch m.Kind {
	case content.KindText, content.KindFile:
		ev.Kind = EventMessage
		if m.Kind == content.KindFile {
			ev.Kind = EventFile
		}
		if !ev.Outgoing {
			b.addReceipt(name, m.ID)
		}
	case content.KindReceipt:
		var evs []Event
		for _, ref := range m.Refs {
			r := ev
			r.Kind, r.Ref = EventReceipt, ref
			evs = append(evs, r)
			entry.Ref = ref.String()
			s.appendLog(entry)
		}
		return evs, processed, nil
	case content.KindTyping:
		ev.Kind = EventTyping
		return []Event{ev}, processed, nil // typing is never worth keeping
	case content.KindStatusKey:
		id, key, err := content.ParseStatusKey(m.Body)
		if err != nil || ev.Outgoing {
			return nil, processed, nil
		}
		if ct := s.Contacts[name]; ct != nil {
			ct.addStatusKey(statusKey{ID: id, Key: key})
		}
		ev.Kind, ev.Body = EventStatusKey, ""
		return []Event{ev}, processed, nil
	}
	s.appendLog(entry)
	return []Event{ev}, processed, nil
}

// errUnlistedDevice reports a message from a device its account does not list (removed
// since it sent the message, or never really added).
var errUnlistedDevice = errors.New("sender device is not among its account's current devices")

// resolveSender finds the pinned contact and device that sealed an envelope, looking up
// accounts this device has not met (trust on first use). A new device of a known account,
// vouched for by the server-signed certificate and listed by LookupIdentity, is pinned as
// unverified (pinNew). A sender whose account or device key differs from the pinned one is
// recorded as the contact's pending identity and returned as changed.
func (c *Client) resolveSender(ctx context.Context, s *state, cert *envelope.SenderCertificate) (string, *peerDevice, *IdentityChangedError, error) {
	certKey := cert.IdentityKey().Bytes()
	name, ct := s.contactByUserID(cert.UserID())
	if ct == nil {
		got, snap, err := c.lookup(ctx, s, &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_UserId{UserId: cert.UserID()}})
		if err != nil {
			return "", nil, nil, err
		}
		s.observe(got, snap)
		name, ct = got, s.Contacts[got]
	}
	if ct.UserID != cert.UserID() {
		if ct.Pending == nil {
			ct.Pending = &identitySnapshot{UserID: cert.UserID(), Keys: map[uint32][]byte{cert.DeviceID(): certKey}}
		}
		return name, nil, ct.pendingError(name), nil
	}
	dev := ct.Devices[cert.DeviceID()]
	if dev == nil || dev.IdentityKey == nil {
		// A device this device has not seen: believe it only if the account lists it now
		// with this key. A late message from a device removed since is not a new device.
		_, snap, err := c.lookup(ctx, s, &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_UserId{UserId: cert.UserID()}})
		if err != nil {
			return "", nil, nil, err
		}
		if k, ok := snap.Keys[cert.DeviceID()]; !ok || !bytes.Equal(k, certKey) {
			return name, nil, nil, fmt.Errorf("from %s device %d: %w", name, cert.DeviceID(), errUnlistedDevice)
		}
		// Observed under the name it is pinned as: the account is known by its user id.
		if changed := s.observe(name, snap); changed != nil {
			return name, nil, changed, nil
		}
		dev = ct.Devices[cert.DeviceID()]
	}
	if !bytes.Equal(dev.IdentityKey, certKey) {
		if ct.Pending == nil {
			snap := ct.snapshot()
			snap.Keys[cert.DeviceID()] = certKey
			ct.Pending = &snap
		}
		return name, nil, ct.pendingError(name), nil
	}
	return name, dev, nil, nil
}

// decryptFrom decrypts a session or prekey message from dev. It tries the device's
// sessions, most recently used first, and moves the one that works to the front (the one
// to send on, which resolves simultaneous initiation). A prekey message that no session
// knows starts a new session with Accept, whose peer identity must be the key that sealed
// the envelope.
func decryptFrom(id *keys.Identity, pre *keys.PreKeyStore, dev *peerDevice, opened *envelope.Opened, certKey []byte, consumed *bool) ([]byte, error) {
	if opened.ContentType != envelope.ContentPreKeyMessage && opened.ContentType != envelope.ContentSessionMessage {
		return nil, fmt.Errorf("unexpected content type %s", opened.ContentType)
	}
	lastErr := errors.New("no session with this device")
	for i, enc := range dev.Sessions {
		sess, err := session.Unmarshal(enc)
		if err != nil {
			lastErr = err
			continue
		}
		pt, err := sess.Decrypt(nil, opened.Content)
		if errors.Is(err, session.ErrDuplicate) {
			return nil, err
		}
		if err != nil {
			lastErr = err
			continue
		}
		updated, err := sess.MarshalBinary()
		if err != nil {
			return nil, err
		}
		dev.Sessions = append([][]byte{updated}, slices.Delete(dev.Sessions, i, i+1)...)
		return pt, nil
	}
	if opened.ContentType != envelope.ContentPreKeyMessage {
		return nil, lastErr
	}
	// The certificate's key is the one the handshake must claim: Accept refuses any other
	// before it touches the prekeys.
	expected, err := keys.ParseIdentityKey(certKey)
	if err != nil {
		return nil, fmt.Errorf("sender certificate identity key: %w", err)
	}
	sess, pt, err := session.Accept(id, pre, opened.Content, expected, sessionConfig)
	if err != nil {
		return nil, err
	}
	enc, err := sess.MarshalBinary()
	if err != nil {
		return nil, err
	}
	dev.Sessions = append([][]byte{enc}, dev.Sessions...)
	if len(dev.Sessions) > maxSessionsPerPeer {
		dev.Sessions = dev.Sessions[:maxSessionsPerPeer]
	}
	*consumed = true
	return pt, nil
}
