// Package backend opens the message store an operator names with --messages (or
// GUARDYN_MESSAGES): the embedded log in the data dir when the address is empty, or a
// Cassandra/ScyllaDB cluster for a cql:// address; see docs/storage.md.
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/cql"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
)

// Store is an open message store and what a server needs to run it.
type Store struct {
	msgstore.Store
	// Ready is the readiness check: the embedded store after a failed write, a cluster
	// that does not answer, fail it.
	Ready func(context.Context) error
	// Embedded is the embedded store, nil for a cluster; tests break it on purpose.
	Embedded *msgembedded.Store
}

// Open opens the store at addr: "" for the embedded store under dataDir, or
// cql://h1:9042,h2:9042/keyspace?dc=dc1 (see cql.ParseURI). A store it cannot open or
// reach fails with an error that names it. The CQL schema must have been created with
// the schema command (tools/cqlschema) first. inboxCap, when positive, is the messaging
// service's inbox cap, which a cluster store enforces itself so that it holds across
// servers (the service checks it before appending too).
func Open(ctx context.Context, addr, dataDir string, log *slog.Logger, inboxCap int) (*Store, error) {
	switch {
	case addr == "":
		s, err := msgembedded.Open(filepath.Join(dataDir, msgembedded.DirName), msgembedded.Options{
			OnError: func(err error) { log.Warn("message store", "err", err) },
		})
		if err != nil {
			return nil, fmt.Errorf("message store in %s: %w", dataDir, err)
		}
		return &Store{Store: s, Ready: s.Ready, Embedded: s}, nil
	case strings.HasPrefix(addr, "cql://"):
		c, err := cql.ParseURI(addr)
		if err != nil {
			return nil, fmt.Errorf("message store: %w", err)
		}
		c.InboxCap = inboxCap
		s, err := cql.Open(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("message store %s: %w", addr, err)
		}
		return &Store{Store: s, Ready: s.Ready}, nil
	}
	return nil, fmt.Errorf("message store %q: want empty (embedded) or cql://host:port,.../keyspace", addr)
}
