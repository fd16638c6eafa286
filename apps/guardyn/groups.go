package main

import (
	"context"
	"fmt"

	"github.com/guardyn/guardyn/libs/client"
)

// groupUsage lists the group subcommands.
const groupUsage = "create <name> <username>... | add <name> <username>... | remove <name> <username>... | update <name> | members <name> | list"

// cmdGroup runs `guardyn group <subcommand>`: MLS group chats in which each device is a
// member; `send <name>` and `listen` carry their messages.
func cmdGroup(ctx context.Context, e *env, args []string) error {
	sub, rest := args[0], args[1:]
	need := map[string]int{"create": 2, "add": 2, "remove": 2, "update": 1, "members": 1, "list": 0}
	n, ok := need[sub]
	if !ok {
		return fmt.Errorf("unknown group subcommand %q; use %s", sub, groupUsage)
	}
	if len(rest) < n || (sub == "update" || sub == "members" || sub == "list") && len(rest) != n {
		return fmt.Errorf("guardyn group %s: wrong number of arguments; use %s", sub, groupUsage)
	}
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "create":
		if err := c.CreateGroup(ctx, rest[0], rest[1:]...); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created group %s with %v\n", rest[0], rest[1:])
	case "add":
		if err := c.GroupAdd(ctx, rest[0], rest[1:]...); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added %v to group %s\n", rest[1:], rest[0])
	case "remove":
		if err := c.GroupRemove(ctx, rest[0], rest[1:]...); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed %v from group %s\n", rest[1:], rest[0])
	case "update":
		if err := c.GroupUpdate(ctx, rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "updated your keys in group %s\n", rest[0])
	case "members":
		ms, err := c.GroupMembers(ctx, rest[0])
		if err != nil {
			return err
		}
		for _, m := range ms {
			fmt.Fprintf(e.stdout, "%-16s device %-3d %s  %s\n", m.Username, m.DeviceID, m.Fingerprint, m.Status)
		}
	case "list":
		names, err := c.Groups()
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(e.stdout, n)
		}
	}
	return nil
}

// printGroupEvent prints the group events of listen; it reports whether ev was one.
func printGroupEvent(e *env, ev client.Event, at string) bool {
	switch {
	case ev.Kind == client.EventMessage && ev.Group != "":
		fmt.Fprintf(e.stdout, "[%s] %s / %s: %s\n", at, ev.Group, ev.From, ev.Body)
	case ev.Kind == client.EventFile && ev.Group != "":
		fmt.Fprintf(e.stdout, "[%s] %s / %s: %s\n", at, ev.Group, ev.From, fileLine(ev.ID, ev.File))
	case ev.Kind == client.EventGroupJoined:
		fmt.Fprintf(e.stdout, "[%s] you joined group %s\n", at, ev.Group)
	case ev.Kind == client.EventGroupChanged:
		fmt.Fprintf(e.stdout, "[%s] %s changed group %s (%s)\n", at, ev.From, ev.Group, ev.Body)
	case ev.Kind == client.EventGroupRemoved:
		fmt.Fprintf(e.stdout, "[%s] !!! %s removed you from group %s: you can no longer read or send there\n", at, ev.From, ev.Group)
	default:
		return false
	}
	return true
}
