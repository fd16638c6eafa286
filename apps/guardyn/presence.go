package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/guardyn/guardyn/libs/client"
)

// atLeastOne is the nargs of commands taking one or more arguments.
const atLeastOne = -3

func presenceFlags(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.statusText, "text", "", "with set: a status text, readable only by the contacts you share your presence with")
}

func watchFlags(fs *flag.FlagSet, e *env) {
	fs.BoolVar(&e.once, "once", false, "exit after the first change following the current states (for scripts)")
}

// cmdPresence: `presence set <status>`, `presence privacy <who> [username...]`,
// `presence show <username...>`.
func cmdPresence(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub, rest := args[0], args[1:]; sub {
	case "set":
		if len(rest) != 1 {
			return errors.New("usage: guardyn presence set <online|away|busy|offline>")
		}
		if err := c.SetStatus(ctx, rest[0], e.statusText); err != nil {
			return err
		}
		if e.statusText != "" {
			fmt.Fprintf(e.stdout, "this device shows %s: %q, sealed for your contacts\n", strings.ToLower(rest[0]), e.statusText)
		} else {
			fmt.Fprintf(e.stdout, "this device shows %s\n", strings.ToLower(rest[0]))
		}
	case "privacy":
		if len(rest) == 0 {
			return errors.New("usage: guardyn presence privacy <everyone|contacts|nobody> [username...]")
		}
		if err := c.SetPresencePrivacy(ctx, rest[0], rest[1:]); err != nil {
			return err
		}
		who := strings.ToLower(rest[0])
		if who == "contacts" {
			who = "contacts: " + strings.Join(rest[1:], ", ")
		}
		fmt.Fprintf(e.stdout, "presence visible to %s (and hidden from you for accounts you hide from)\n", who)
		if strings.ToLower(rest[0]) == "contacts" && len(rest) > 1 {
			fmt.Fprintln(e.stdout, "status text key sent to them end to end")
		}
	case "show":
		if len(rest) == 0 {
			return errors.New("usage: guardyn presence show <username...>")
		}
		ps, err := c.GetPresence(ctx, rest)
		if err != nil {
			return err
		}
		for _, p := range ps {
			printPresence(e, p)
		}
	default:
		return fmt.Errorf("unknown presence command %q: want set, privacy or show", sub)
	}
	return nil
}

func printPresence(e *env, p client.Presence) {
	line := p.Username + ": " + p.Status
	switch {
	case p.Text != "":
		line += fmt.Sprintf(" %q", p.Text)
	case p.TextLocked:
		line += " (a status text whose key has not arrived: run listen)"
	}
	if !p.LastSeen.IsZero() {
		line += ", last seen " + p.LastSeen.Local().Format(timeFormat)
	}
	fmt.Fprintln(e.stdout, line)
}

func cmdWatch(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.WatchPresence(ctx, args, e.once, func(p client.Presence) { printPresence(e, p) })
}

// cmdPush: `push list`, `push unregister`, `push web <endpoint> <p256dh> <auth>` (keys in
// base64url, as PushSubscription.toJSON() gives them).
func cmdPush(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub, rest := args[0], args[1:]; sub {
	case "list":
		targets, err := c.PushTargets(ctx)
		if err != nil {
			return err
		}
		if len(targets) == 0 {
			fmt.Fprintln(e.stdout, "no device of this account has a push target")
		}
		for _, t := range targets {
			fmt.Fprintf(e.stdout, "device %d: %s, registered %s\n", t.DeviceID, t.Platform, t.Registered.Local().Format(timeFormat))
		}
	case "unregister":
		if err := c.UnregisterPush(ctx); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "this device no longer gets pushes")
	case "web":
		if len(rest) != 3 {
			return errors.New("usage: guardyn push web <endpoint> <p256dh> <auth>")
		}
		p256dh, err1 := base64.RawURLEncoding.DecodeString(strings.TrimRight(rest[1], "="))
		auth, err2 := base64.RawURLEncoding.DecodeString(strings.TrimRight(rest[2], "="))
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("p256dh and auth must be base64url: %w", err)
		}
		if err := c.RegisterWebPush(ctx, rest[0], p256dh, auth); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "this device gets a content-free Web Push when a message waits for it")
	default:
		return fmt.Errorf("unknown push command %q: want list, web or unregister", sub)
	}
	return nil
}
