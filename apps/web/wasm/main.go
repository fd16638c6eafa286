//go:build js && wasm

// Command wasm is the Guardyn web app's client: libs/client compiled to WebAssembly
// (GOOS=js GOARCH=wasm) with a small API on globalThis.guardyn for the UI
// (apps/web/bundle/static/app.js). Every key, session and message is handled here, in Go;
// the UI only shows what this API returns. Each call returns a Promise; failures reject with
// {code, message}, where code is a stable word the UI turns into a state (see errCode).
//
// Transport is gRPC-Web to the page's own origin (libs/client/grpcweb over fetch); each
// profile lives in its own IndexedDB database (libs/client/vault/idb), sealed by the vault.
package main

import (
	"context"
	"errors"

	"sort"
	"strings"
	"syscall/js"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/apps/web/cryptobench"
	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/client/grpcweb"
	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/client/vault/idb"
)

// profileDB prefixes the IndexedDB database of each profile this browser keeps.
const profileDB = "guardyn-profile:"

// profiles lists the profiles kept in this browser: the databases that hold one (opening a
// name that holds none leaves an empty database behind, which is not listed).
func profiles() ([]string, error) {
	names, err := idb.Names(profileDB)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, n := range names {
		st, err := idb.Open(n)
		if err != nil {
			return nil, err
		}
		unlock, err := st.Lock()
		st.Close()
		if errors.Is(err, vault.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		unlock()
		out = append(out, strings.TrimPrefix(n, profileDB))
	}
	sort.Strings(out)
	return out, nil
}

// app is the state of this tab: at most one open profile.
type app struct {
	conn   *grpcweb.Conn
	c      *client.Client
	cancel context.CancelFunc // stops the listener
	store  *idb.Storage       // the open profile's database
}

// callTimeout bounds each API call but Listen and WaitLink.
const callTimeout = 60 * time.Second

func main() {
	origin := js.Global().Get("location").Get("origin").String()
	a := &app{conn: grpcweb.New(nil, origin, grpcweb.GRPCWeb)}
	api := map[string]any{
		"profiles":      a.promise(func(context.Context, []js.Value) (any, error) { return profiles() }),
		"register":      a.promise(a.register),
		"open":          a.promise(a.open),
		"startLink":     a.promise(a.startLink),
		"waitLink":      a.promise(a.waitLink),
		"whoami":        a.promise(a.whoami),
		"pendingLinks":  a.promise(a.pendingLinks),
		"approve":       a.promise(a.approve),
		"conversations": a.promise(a.conversations),
		"history":       a.promise(a.history),
		"send":          a.promise(a.send),
		"typing":        a.promise(a.typing),
		"safetyNumber":  a.promise(a.safetyNumber),
		"trust":         a.promise(a.trust),
		"listen":        js.FuncOf(a.listen),
		"checkText":     js.FuncOf(checkText),
		"lock":          a.promise(a.lock),
		"benchCrypto":   a.promise(benchCrypto),
	}
	js.Global().Set("guardyn", js.ValueOf(api))
	js.Global().Get("dispatchEvent").Invoke(js.Global().Get("Event").New("guardyn-ready"))
	select {}
}

// promise wraps f as a JS function returning a Promise resolved with its result; f runs in
// a goroutine, as a blocking call on the JS event loop would deadlock the fetch it waits for.
func (a *app) promise(f func(ctx context.Context, args []js.Value) (any, error)) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		args = append([]js.Value(nil), args...)
		var resolve, reject js.Value
		executor := js.FuncOf(func(_ js.Value, fns []js.Value) any {
			resolve, reject = fns[0], fns[1]
			return nil
		})
		p := js.Global().Get("Promise").New(executor)
		executor.Release()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			v, err := f(ctx, args)
			if err != nil {
				reject.Invoke(toJS(map[string]any{"code": errCode(err), "message": err.Error()}))
				return
			}
			resolve.Invoke(toJS(v))
		}()
		return p
	})
}

// errCode names a failure for the UI: each code is a distinct state it shows.
func errCode(err error) string {
	var changed *client.IdentityChangedError
	switch {
	case errors.Is(err, vault.ErrWrongPassphrase):
		return "wrong-passphrase"
	case errors.Is(err, client.ErrNoProfile), errors.Is(err, vault.ErrNotFound):
		return "no-profile"
	case errors.Is(err, client.ErrProfileExists):
		return "profile-exists"
	case errors.Is(err, client.ErrLinkPending):
		return "link-pending"
	case errors.Is(err, client.ErrLinkRejected), errors.Is(err, client.ErrLinkExpired):
		return "link-refused"
	case errors.Is(err, client.ErrBadText), errors.Is(err, client.ErrEmptyMessage):
		return "bad-text"
	case errors.As(err, &changed):
		return "identity-changed"
	case errors.Is(err, client.ErrSelf):
		return "self"
	case errors.Is(err, errNotOpen):
		return "not-open"
	}
	switch client.Reason(err) {
	case "USERNAME_TAKEN":
		return "username-taken"
	case "USER_NOT_FOUND":
		return "unknown-user"
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return "unavailable"
	case codes.ResourceExhausted:
		return "too-large-or-rate-limited"
	case codes.NotFound:
		return "unknown-user"
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		// What a server that answers garbage produces: grpcweb cannot decode the
		// response, the protocol framing is wrong (several messages for a unary
		// call), or the server does not know the call.
		return "server-garbage"
	case codes.InvalidArgument:
		return "invalid"
	}
	return "error"
}

var errNotOpen = errors.New("webapp: no profile is open")

// config opens the profile's database; the caller hands it to replace with the client it
// made, or closes it.
func (a *app) config(profile string, passphrase string) (client.Config, *idb.Storage, error) {
	st, err := idb.Open(profileDB + profile)
	if err != nil {
		return client.Config{}, nil, err
	}
	return client.Config{Home: "/guardyn/" + profile, Storage: st, Passphrase: []byte(passphrase), Conn: a.conn}, st, nil
}

// replace makes c, kept in st, the open profile, closing the previous one.
func (a *app) replace(c *client.Client, st *idb.Storage) {
	if a.cancel != nil {
		a.cancel()
		a.cancel = nil
	}
	if a.c != nil {
		a.c.Close()
	}
	if a.store != nil && a.store != st {
		a.store.Close()
	}
	a.c, a.store = c, st
}

func arg(args []js.Value, i int) string {
	if i >= len(args) || args[i].Type() != js.TypeString {
		return ""
	}
	return args[i].String()
}

// register(username, deviceName, passphrase) creates an account with this browser as its
// first device.
func (a *app) register(ctx context.Context, args []js.Value) (any, error) {
	user := strings.ToLower(arg(args, 0))
	cfg, st, err := a.config(user, arg(args, 2))
	if err != nil {
		return nil, err
	}
	c, err := client.Register(ctx, cfg, user, arg(args, 1))
	if c != nil {
		a.replace(c, st)
	} else {
		st.Close()
	}
	if err != nil {
		return nil, err
	}
	return a.whoami(ctx, nil)
}

// open(username, passphrase) unlocks a profile kept in this browser.
func (a *app) open(ctx context.Context, args []js.Value) (any, error) {
	user := strings.ToLower(arg(args, 0))
	cfg, st, err := a.config(user, arg(args, 1))
	if err != nil {
		return nil, err
	}
	c, err := client.Open(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	a.replace(c, st)
	return a.whoami(ctx, nil)
}

// startLink(username, deviceName, passphrase) asks to add this browser to an existing
// account; it resolves with the fingerprint to compare on the approving device.
func (a *app) startLink(ctx context.Context, args []js.Value) (any, error) {
	user := strings.ToLower(arg(args, 0))
	cfg, st, err := a.config(user, arg(args, 2))
	if err != nil {
		return nil, err
	}
	c, req, err := client.StartLink(ctx, cfg, user, arg(args, 1))
	if err != nil {
		st.Close()
		return nil, err
	}
	a.replace(c, st)
	return map[string]any{"id": req.ID, "fingerprint": req.Fingerprint, "expires": req.Expires.UnixMilli()}, nil
}

// waitLink() resolves once an existing device approved the link started by startLink.
func (a *app) waitLink(_ context.Context, _ []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := a.c.WaitLink(ctx, time.Second); err != nil {
		return nil, err
	}
	return a.whoami(ctx, nil)
}

func (a *app) whoami(context.Context, []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	p, err := a.c.Whoami()
	if err != nil {
		return nil, err
	}
	return map[string]any{"username": p.Username, "deviceId": int(p.DeviceID), "deviceName": p.DeviceName,
		"fingerprint": p.Fingerprint, "linkPending": p.LinkPending}, nil
}

func (a *app) pendingLinks(ctx context.Context, _ []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	links, err := a.c.PendingLinks(ctx)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, l := range links {
		out = append(out, map[string]any{"id": l.ID, "deviceName": l.DeviceName, "fingerprint": l.Fingerprint})
	}
	return out, nil
}

// approve(linkID) adds the device that asked; the user compared its fingerprint first.
func (a *app) approve(ctx context.Context, args []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	id, err := a.c.Approve(ctx, arg(args, 0))
	if err != nil {
		return nil, err
	}
	return int(id), nil
}

// conversations() lists the peers of the local history, the latest first.
func (a *app) conversations(context.Context, []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	log, err := a.c.History("")
	if err != nil {
		return nil, err
	}
	type conv struct {
		peer, last string
		at         time.Time
	}
	byPeer := map[string]*conv{}
	for _, e := range log {
		cv := byPeer[e.Peer]
		if cv == nil {
			cv = &conv{peer: e.Peer}
			byPeer[e.Peer] = cv
		}
		if e.Ref == "" && !e.Sent.Before(cv.at) {
			cv.last, cv.at = e.Body, e.Sent
		}
	}
	list := make([]*conv, 0, len(byPeer))
	for _, cv := range byPeer {
		list = append(list, cv)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].at.After(list[j].at) })
	out := []any{}
	for _, cv := range list {
		out = append(out, map[string]any{"peer": cv.peer, "last": cv.last, "at": cv.at.UnixMilli()})
	}
	return out, nil
}

// history(peer) returns the conversation with peer, oldest first: messages, with
// "delivered" set on this account's messages a device of the peer acknowledged.
func (a *app) history(_ context.Context, args []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	log, err := a.c.History(strings.ToLower(arg(args, 0)))
	if err != nil {
		return nil, err
	}
	delivered := map[string]bool{}
	for _, e := range log {
		if e.Ref != "" {
			delivered[e.Ref] = true
		}
	}
	out := []any{}
	for _, e := range log {
		if e.Ref != "" {
			continue
		}
		out = append(out, map[string]any{"id": e.ID, "peer": e.Peer, "from": e.From, "outgoing": e.Outgoing,
			"kind": string(e.Kind), "body": e.Body, "sent": e.Sent.UnixMilli(), "delivered": delivered[e.ID]})
	}
	return out, nil
}

// send(peer, text) encrypts and sends a text message.
func (a *app) send(ctx context.Context, args []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	text := arg(args, 1)
	if err := client.CheckText(text); err != nil {
		return nil, err
	}
	id, err := a.c.Send(ctx, strings.ToLower(arg(args, 0)), text)
	if err != nil {
		return nil, err
	}
	return map[string]any{"id": id.String(), "sent": time.Now().UnixMilli()}, nil
}

func (a *app) typing(ctx context.Context, args []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	return nil, a.c.Typing(ctx, strings.ToLower(arg(args, 0)))
}

// safetyNumber(peer) computes the number both users compare, and whether peer's keys
// changed since this device pinned them.
func (a *app) safetyNumber(ctx context.Context, args []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	sn, err := a.c.SafetyNumber(ctx, strings.ToLower(arg(args, 0)))
	if err != nil {
		return nil, err
	}
	out := map[string]any{"number": sn.Number, "changed": sn.Changed != nil, "warning": ""}
	if sn.Changed != nil {
		out["warning"] = sn.Changed.Error()
	}
	var nd []any
	for _, d := range sn.NewDevices {
		nd = append(nd, map[string]any{"deviceId": int(d.DeviceID), "fingerprint": d.Fingerprint})
	}
	out["newDevices"] = nd
	return out, nil
}

// trust(peer) accepts peer's current keys after the user compared safety numbers.
func (a *app) trust(ctx context.Context, args []js.Value) (any, error) {
	if a.c == nil {
		return nil, errNotOpen
	}
	return nil, a.c.Trust(ctx, strings.ToLower(arg(args, 0)))
}

// lock() closes the open profile: its key is forgotten until the passphrase is given again.
func (a *app) lock(context.Context, []js.Value) (any, error) {
	a.replace(nil, nil)
	return nil, nil
}

// checkText(text) says synchronously why a message cannot be sent ("" when it can), so the
// UI refuses an oversized message before trying.
func checkText(_ js.Value, args []js.Value) any {
	if err := client.CheckText(arg(args, 0)); err != nil {
		return err.Error()
	}
	return ""
}

// Listener reconnection when Listen itself gives up (it retries the server's restarts on
// its own): quick at first, at most every 15 s.
const (
	relistenMin = time.Second
	relistenMax = 15 * time.Second
)

// listen(callback) receives for the open profile until lock or another open, calling
// callback with each event ({kind, peer, ...}). A lost connection is reported as
// {kind: "disconnected"} and retried with backoff; nothing is lost meanwhile, because the
// server keeps what was not acknowledged.
func (a *app) listen(_ js.Value, args []js.Value) any {
	if a.c == nil || len(args) == 0 || args[0].Type() != js.TypeFunction {
		return false
	}
	if a.cancel != nil {
		a.cancel()
	}
	cb, c := args[0], a.c
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	emit := func(ev map[string]any) { cb.Invoke(toJS(ev)) }
	go func() {
		delay := relistenMin
		for ctx.Err() == nil {
			started := time.Now()
			err := c.Listen(ctx, false, func(e client.Event) { emit(eventJS(e)) })
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("listen ended")
			}
			if time.Since(started) > relistenMax {
				delay = relistenMin
			}
			emit(map[string]any{"kind": "disconnected", "code": errCode(err), "message": err.Error(), "retryMs": delay.Milliseconds()})
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, relistenMax)
		}
	}()
	return true
}

var eventKinds = map[client.EventKind]string{
	client.EventMessage: "message", client.EventReceipt: "receipt", client.EventTyping: "typing",
	client.EventIdentityChanged: "identity-changed", client.EventUndecryptable: "undecryptable",
	client.EventBacklogDone: "backlog-done", client.EventWarning: "warning", client.EventNewDevice: "new-device",
	client.EventNewOwnDevice: "new-own-device", client.EventDisconnected: "disconnected",
	client.EventReconnected: "reconnected", client.EventFile: "file", client.EventGroupJoined: "group-joined",
	client.EventGroupChanged: "group-changed", client.EventGroupRemoved: "group-removed", client.EventStatusKey: "status-key",
}

func eventJS(e client.Event) map[string]any {
	out := map[string]any{"kind": eventKinds[e.Kind], "peer": e.Peer, "from": e.From, "fromDevice": int(e.FromDevice),
		"outgoing": e.Outgoing, "body": e.Body, "group": e.Group, "fingerprint": e.Fingerprint,
		"sent": e.Sent.UnixMilli(), "received": e.Received.UnixMilli()}
	if e.ID != (content.ID{}) {
		out["id"] = e.ID.String()
	}
	if e.Ref != (content.ID{}) {
		out["ref"] = e.Ref.String()
	}
	if e.Err != nil {
		out["message"] = e.Err.Error()
		out["code"] = errCode(e.Err)
	}
	if e.File != nil {
		out["fileName"] = e.File.Name
		out["fileSize"] = e.File.Size
	}
	return out
}

// toJS converts Go values of the API (maps, slices, strings, numbers, bools) to JS values.
func toJS(v any) js.Value {
	switch v := v.(type) {
	case nil:
		return js.Undefined()
	case []string:
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = s
		}
		return js.ValueOf(out)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = toJS(x)
		}
		return js.ValueOf(out)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = toJS(x)
		}
		return js.ValueOf(out)
	case js.Value:
		return v
	case int64:
		return js.ValueOf(float64(v))
	case uint64:
		return js.ValueOf(float64(v))
	default:
		return js.ValueOf(v)
	}
}

// benchCrypto(rounds) times the session crypto here, in the browser (package cryptobench);
// the browser test compares it with the same code run natively.
func benchCrypto(_ context.Context, args []js.Value) (any, error) {
	rounds := 20
	if len(args) > 0 && args[0].Type() == js.TypeNumber {
		rounds = args[0].Int()
	}
	r, err := cryptobench.Run(rounds)
	if err != nil {
		return nil, err
	}
	return map[string]any{"rounds": r.Rounds, "handshakeUs": r.Handshake.Microseconds(), "messageUs": r.Message.Microseconds()}, nil
}
