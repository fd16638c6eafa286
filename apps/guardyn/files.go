package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/content"
)

// cmdSendFile encrypts a file, uploads it (resuming an interrupted upload of the same file
// to the same contact or group) and sends its key in an end-to-end encrypted message.
func cmdSendFile(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	group := c.IsGroup(args[0])
	sent, err := c.SendFile(ctx, args[0], args[1])
	if !group && !errors.Is(err, client.ErrUnverifiedDevices) {
		if werr := warnNewDevices(e, c, args[0]); werr != nil && err == nil {
			err = werr
		}
	}
	if sent != nil && sent.ResumedAt > 0 {
		fmt.Fprintf(e.stderr, "resumed the upload at %s\n", size(sent.ResumedAt))
	}
	if err != nil {
		return err
	}
	to := args[0]
	if group {
		to = "group " + to
	}
	fmt.Fprintf(e.stdout, "sent file %s (%s) to %s as %s\n", sent.File.Name, size(sent.File.PlaintextSize()), to, sent.ID)
	return nil
}

// cmdGet downloads, checks and decrypts the file of a message from the history.
func cmdGet(ctx context.Context, e *env, args []string) error {
	c, err := e.open()
	if err != nil {
		return err
	}
	defer c.Close()
	entry, err := c.FindFile(args[0])
	if err != nil {
		return err
	}
	dst := "."
	if len(args) == 2 {
		dst = args[1]
	}
	path, err := c.GetFile(ctx, entry, dst)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "saved %s (%s, verified)\n", path, size(entry.File.PlaintextSize()))
	return nil
}

// fileLine describes a shared file and how to fetch it.
func fileLine(id content.ID, f *content.File) string {
	return fmt.Sprintf("file %s (%s); fetch it with: guardyn get %s", f.Name, size(f.PlaintextSize()), id)
}

// size formats a byte count for people.
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// mustID parses a history entry's id; entries are written by this client, so a bad one
// prints as zeros rather than failing the listing.
func mustID(s string) content.ID {
	id, _ := content.ParseID(s)
	return id
}
