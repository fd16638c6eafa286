// Package backend opens the media service's blob store where the operator's --messages
// address (GUARDYN_MESSAGES) says the cluster data lives: the embedded files in the data
// dir when it is empty, or the media tables of the same Cassandra/ScyllaDB keyspace as
// the inboxes for a cql:// address; see docs/storage.md.
//
// One address serves both because one keyspace holds both (one schema command, one set
// of credentials and replicas to run): a deployment that puts its inboxes on a cluster
// to leave one machine cannot keep its media on that machine's disk.
package backend

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/guardyn/guardyn/libs/blobstore"
	blobcql "github.com/guardyn/guardyn/libs/blobstore/cql"
	blobembedded "github.com/guardyn/guardyn/libs/blobstore/embedded"
	msgcql "github.com/guardyn/guardyn/libs/msgstore/cql"
)

// Store is an open blob store and its readiness check.
type Store struct {
	blobstore.Store
	// Ready fails when the store cannot serve: an embedded store after a failed write,
	// a cluster that does not answer.
	Ready func(context.Context) error
}

// Open opens the blob store for addr: "" for the embedded store under dataDir, or
// cql://h1:9042,h2:9042/keyspace?dc=dc1 (see msgcql.ParseURI), whose schema the schema
// command (tools/cqlschema) must have created. A store it cannot open or reach fails
// with an error that names it.
func Open(ctx context.Context, addr, dataDir string) (*Store, error) {
	switch {
	case addr == "":
		s, err := blobembedded.Open(filepath.Join(dataDir, blobembedded.DirName))
		if err != nil {
			return nil, fmt.Errorf("blob store in %s: %w", dataDir, err)
		}
		return &Store{Store: s, Ready: s.Ready}, nil
	case strings.HasPrefix(addr, "cql://"):
		c, err := msgcql.ParseURI(addr)
		if err != nil {
			return nil, fmt.Errorf("blob store: %w", err)
		}
		s, err := blobcql.Open(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("blob store %s: %w", addr, err)
		}
		return &Store{Store: s, Ready: s.Ready}, nil
	}
	return nil, fmt.Errorf("blob store %q: want empty (embedded) or cql://host:port,.../keyspace", addr)
}
