package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/client/vault"
)

const timeFormat = "2006-01-02 15:04:05"

func cmdRegister(ctx context.Context, e *env, args []string) error {
	cfg, err := e.config(true)
	if err != nil {
		return err
	}
	c, err := client.Register(ctx, cfg, args[0], e.deviceName)
	if err != nil {
		return err
	}
	defer c.Close()
	who, err := c.Whoami()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "registered %s (account %s) as device %d %q\n", who.Username, who.UserID, who.DeviceID, who.DeviceName)
	fmt.Fprintf(e.stdout, "device fingerprint: %s\n", who.Fingerprint)
	fmt.Fprintf(e.stdout, "profile: %s\n", e.home)
	return nil
}

func cmdLogin(ctx context.Context, e *env, _ []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(ctx); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "logged in")
	return nil
}

func cmdWhoami(_ context.Context, e *env, _ []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	who, err := c.Whoami()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "username:    %s\n", who.Username)
	if who.LinkPending {
		fmt.Fprintln(e.stdout, "device:      waiting for link approval (run link again to wait)")
	} else {
		fmt.Fprintf(e.stdout, "account:     %s\n", who.UserID)
		fmt.Fprintf(e.stdout, "device:      %d %q\n", who.DeviceID, who.DeviceName)
	}
	fmt.Fprintf(e.stdout, "fingerprint: %s\n", who.Fingerprint)
	fmt.Fprintf(e.stdout, "server:      %s\n", e.server)
	fmt.Fprintf(e.stdout, "profile:     %s\n", e.home)
	return nil
}

func cmdDevices(ctx context.Context, e *env, _ []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	devs, err := c.Devices(ctx)
	if err != nil {
		return err
	}
	var unapproved []client.Device
	for _, d := range devs {
		mark := ""
		switch {
		case d.Current:
			mark = "  (this device)"
		case d.Unverified:
			mark = "  (NEW: not approved from this device)"
			unapproved = append(unapproved, d)
		}
		fmt.Fprintf(e.stdout, "%3d  %-24q %s  added %s%s\n", d.ID, d.Name, d.Fingerprint, d.Created.Local().Format(timeFormat), mark)
	}
	for _, d := range unapproved {
		fmt.Fprintf(e.stderr, "!!! %s\n", ownDeviceWarning(d.ID, "at "+d.Created.Local().Format(timeFormat), d.Fingerprint))
	}
	return nil
}

// ownDeviceWarning is the warning about a device of one's own account that this device
// did not approve.
// when says when it was added ("at ...") or noticed.
func ownDeviceWarning(id uint32, when, fingerprint string) string {
	return fmt.Sprintf("a new device %d was added to your account %s, fingerprint %s; "+
		"if you did not link it, remove it with: guardyn remove-device %d (if you did, run trust with your own username to stop this warning)",
		id, when, fingerprint, id)
}

// contactDeviceWarning is the warning about a new device of a contact.
func contactDeviceWarning(nd client.NewDevice) string {
	return fmt.Sprintf("%s has a new device %d, fingerprint %s: the safety number with %s changed; "+
		"compare it (guardyn safety-number %s) out of band, then run guardyn trust %s",
		nd.Username, nd.DeviceID, nd.Fingerprint, nd.Username, nd.Username, nd.Username)
}

// warnNewDevices prints a warning line for every unverified device of username's account
// and of one's own.
func warnNewDevices(e *env, c *client.Client, username string) error {
	for _, who := range []string{username, ""} {
		nds, err := c.UnverifiedDevices(who)
		if err != nil {
			return err
		}
		for _, nd := range nds {
			if nd.OwnAccount {
				fmt.Fprintf(e.stderr, "warning: %s\n", ownDeviceWarning(nd.DeviceID, "(noticed "+nd.Seen.Local().Format(timeFormat)+")", nd.Fingerprint))
			} else {
				fmt.Fprintf(e.stderr, "warning: %s\n", contactDeviceWarning(nd))
			}
		}
	}
	return nil
}

func cmdLink(ctx context.Context, e *env, args []string) error {
	cfg, err := e.config(!vault.Exists(vault.Dir(e.home))) // confirm the passphrase only for a new profile
	if err != nil {
		return err
	}
	var c *client.Client
	if existing, err := client.Open(cfg); err == nil {
		c = existing // resume waiting for a link started earlier
		who, err := c.Whoami()
		if err != nil {
			return err
		}
		if !who.LinkPending {
			c.Close()
			return fmt.Errorf("%w: this profile is already device %d of %s", client.ErrProfileExists, who.DeviceID, who.Username)
		}
		fmt.Fprintf(e.stdout, "still waiting for approval; this device's fingerprint: %s\n", who.Fingerprint)
	} else if errors.Is(err, client.ErrNoProfile) {
		var req client.LinkRequest
		c, req, err = client.StartLink(ctx, cfg, args[0], e.deviceName)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "link requested (expires %s)\n", req.Expires.Local().Format(timeFormat))
		fmt.Fprintf(e.stdout, "this device's fingerprint: %s\n", req.Fingerprint)
		fmt.Fprintf(e.stdout, "on an existing device of %s run: guardyn approve %s\n", args[0], req.ID)
		// The server does not tell a caller who has not logged in whether a username
		// exists (docs/threat-model.md): a mistyped name waits until the link expires.
		fmt.Fprintf(e.stdout, "waiting for approval until %s (Ctrl-C stops waiting; run link again to resume). "+
			"If %q is not the exact username, nobody can approve it: stop and link again.\n",
			req.Expires.Local().Format(timeFormat), args[0])
	} else {
		return err
	}
	defer c.Close()
	if err := c.WaitLink(ctx, time.Second); err != nil {
		return err
	}
	who, err := c.Whoami()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "linked: this profile is device %d of %s\n", who.DeviceID, who.Username)
	return nil
}

func cmdApprove(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	links, err := c.PendingLinks(ctx)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		if len(links) == 0 {
			fmt.Fprintln(e.stdout, "no pending device links")
		}
		for _, l := range links {
			fmt.Fprintf(e.stdout, "%s  %-24q fingerprint %s  expires %s\n", l.ID, l.DeviceName, l.Fingerprint, l.Expires.Local().Format(timeFormat))
		}
		return nil
	}
	for _, l := range links {
		if l.ID != args[0] {
			continue
		}
		id, err := c.Approve(ctx, l.ID)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "approved %q as device %d; its fingerprint: %s (it must match the one the new device shows)\n", l.DeviceName, id, l.Fingerprint)
		return nil
	}
	return fmt.Errorf("no pending device link %q (run approve without arguments to list them)", args[0])
}

func cmdReject(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Reject(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "rejected link %s\n", args[0])
	return nil
}

func cmdRemoveDevice(ctx context.Context, e *env, args []string) error {
	id, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil || id == 0 {
		return fmt.Errorf("device id %q is not a positive number", args[0])
	}
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.RemoveDevice(ctx, uint32(id)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed device %d\n", id)
	return nil
}

// maxInput bounds what send reads from a file or standard input: one byte over the text
// limit is enough to refuse it.
const maxInput = content.MaxBodySize + 1

func cmdSend(ctx context.Context, e *env, args []string) error {
	text, err := messageText(e, args[1:])
	if err != nil {
		return err
	}
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if c.IsGroup(args[0]) {
		id, err := c.SendGroup(ctx, args[0], text)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "sent %s to group %s\n", id, args[0])
		return nil
	}
	id, err := c.Send(ctx, args[0], text)
	if !errors.Is(err, client.ErrUnverifiedDevices) {
		// The message went to new devices too (or failed for another reason): say so loudly.
		if werr := warnNewDevices(e, c, args[0]); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "sent %s to %s\n", id, args[0])
	return nil
}

// messageText is the text to send: the argument, the --file, or standard input for "-".
// A trailing newline from a file or a pipe is not part of the message.
func messageText(e *env, args []string) (string, error) {
	var r io.Reader
	switch {
	case e.file != "" && len(args) > 0:
		return "", errors.New("give the text as an argument or with --file, not both")
	case e.file != "":
		f, err := os.Open(e.file)
		if err != nil {
			return "", fmt.Errorf("message file: %w", err)
		}
		defer f.Close()
		r = f
	case len(args) == 0:
		return "", errors.New("no message: give the text as an argument, --file <path>, or - to read standard input")
	case args[0] == "-":
		r = e.stdin
	default:
		return args[0], client.CheckText(args[0])
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInput))
	if err != nil {
		return "", fmt.Errorf("read message: %w", err)
	}
	if len(b) >= maxInput {
		return "", fmt.Errorf("%w: more than %d bytes (32 KiB)", client.ErrBadText, content.MaxBodySize)
	}
	text := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	return text, client.CheckText(text)
}

func cmdTyping(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Typing(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "told %s's online devices that you are typing\n", args[0])
	return nil
}

func cmdListen(ctx context.Context, e *env, _ []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Listen(ctx, e.once, func(ev client.Event) { printEvent(e, ev) })
}

// printEvent prints one event as a line a person reads.
func printEvent(e *env, ev client.Event) {
	at := ev.Received.Local().Format(timeFormat)
	if printGroupEvent(e, ev, at) {
		return
	}
	switch ev.Kind {
	case client.EventMessage:
		if ev.Outgoing {
			fmt.Fprintf(e.stdout, "[%s] you -> %s (from your device %d): %s\n", at, ev.Peer, ev.FromDevice, ev.Body)
		} else {
			fmt.Fprintf(e.stdout, "[%s] %s: %s\n", at, ev.From, ev.Body)
		}
	case client.EventFile:
		if ev.Outgoing {
			fmt.Fprintf(e.stdout, "[%s] you -> %s (from your device %d): %s\n", at, ev.Peer, ev.FromDevice, fileLine(ev.ID, ev.File))
		} else {
			fmt.Fprintf(e.stdout, "[%s] %s: %s\n", at, ev.From, fileLine(ev.ID, ev.File))
		}
	case client.EventReceipt:
		fmt.Fprintf(e.stdout, "[%s] receipt: %s device %d received %s\n", at, ev.From, ev.FromDevice, ev.Ref)
	case client.EventTyping:
		fmt.Fprintf(e.stdout, "[%s] %s is typing...\n", at, ev.From)
	case client.EventStatusKey:
		fmt.Fprintf(e.stdout, "[%s] %s shares their status text with you\n", at, ev.From)
	case client.EventIdentityChanged:
		fmt.Fprintf(e.stdout, "[%s] !!! %s; their messages stay on the server until you trust them\n", at, describe(ev.Err))
	case client.EventNewDevice:
		fmt.Fprintf(e.stdout, "[%s] !!! %s\n", at, contactDeviceWarning(client.NewDevice{Username: ev.Peer, DeviceID: ev.FromDevice, Fingerprint: ev.Fingerprint}))
	case client.EventNewOwnDevice:
		fmt.Fprintf(e.stdout, "[%s] !!! %s\n", at, ownDeviceWarning(ev.FromDevice, "(noticed "+at+")", ev.Fingerprint))
	case client.EventUndecryptable:
		fmt.Fprintf(e.stdout, "[%s] ! undecryptable message dropped: %s\n", at, describe(ev.Err))
	case client.EventWarning:
		fmt.Fprintf(e.stderr, "warning: %s\n", describe(ev.Err))
	case client.EventDisconnected:
		fmt.Fprintf(e.stderr, "[%s] connection lost: %s; reconnecting...\n", at, describe(ev.Err))
	case client.EventReconnected:
		fmt.Fprintf(e.stderr, "[%s] reconnected; listening again\n", at)
	case client.EventBacklogDone:
		if !e.once {
			fmt.Fprintln(e.stderr, "-- backlog done; listening (Ctrl-C to stop)")
		}
	}
}

func cmdHistory(_ context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	peer := ""
	if len(args) == 1 {
		peer = args[0]
	}
	log, err := c.History(peer)
	if err != nil {
		return err
	}
	for _, m := range log {
		at := m.Sent.Local().Format(timeFormat)
		switch {
		case m.Kind == "receipt":
			fmt.Fprintf(e.stdout, "[%s] %s received %s\n", at, m.Peer, m.Ref)
		case m.File != nil && m.Outgoing:
			fmt.Fprintf(e.stdout, "[%s] you -> %s: %s\n", at, m.Peer, fileLine(mustID(m.ID), m.File))
		case m.File != nil:
			fmt.Fprintf(e.stdout, "[%s] %s: %s\n", at, m.Peer, fileLine(mustID(m.ID), m.File))
		case m.From != "" && !m.Outgoing:
			fmt.Fprintf(e.stdout, "[%s] %s / %s: %s\n", at, m.Peer, m.From, m.Body)
		case m.Outgoing:
			fmt.Fprintf(e.stdout, "[%s] you -> %s: %s\n", at, m.Peer, m.Body)
		default:
			fmt.Fprintf(e.stdout, "[%s] %s: %s\n", at, m.Peer, m.Body)
		}
	}
	return nil
}

func cmdSafetyNumber(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	n, err := c.SafetyNumber(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "safety number with %s:\n%s\n", args[0], n.Number)
	if n.Changed != nil {
		fmt.Fprintf(e.stdout, "!!! %s\n", describe(n.Changed))
	}
	if len(n.NewDevices) > 0 {
		fmt.Fprintf(e.stdout, "!!! this number changed since you last trusted %s (or first contact), because of new device(s):\n", args[0])
		for _, nd := range n.NewDevices {
			fmt.Fprintf(e.stdout, "    device %d  fingerprint %s  seen %s\n", nd.DeviceID, nd.Fingerprint, nd.Seen.Local().Format(timeFormat))
		}
		fmt.Fprintf(e.stdout, "compare the number out of band, then run: guardyn trust %s\n", args[0])
	}
	return nil
}

func cmdTrust(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Trust(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "now trusting %s's current identity keys\n", args[0])
	return nil
}

func cmdExport(ctx context.Context, e *env, _ []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	data, err := c.Export(ctx)
	if err != nil {
		return err
	}
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode export: %w", err)
	}
	fmt.Fprintln(e.stdout, string(b))
	return nil
}

func cmdDeleteAccount(ctx context.Context, e *env, _ []string) error {
	if e.confirm == "" {
		return errors.New("refusing without --confirm <your username>")
	}
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.DeleteAccount(ctx, e.confirm); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "account deleted; this profile's local state is gone")
	return nil
}
