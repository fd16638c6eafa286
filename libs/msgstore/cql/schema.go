package cql

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// SchemaVersion is the schema this package reads and writes.
const SchemaVersion = 2

// ErrSchema means the keyspace does not hold the schema this package needs: Migrate has
// not been run, or a newer version of Guardyn migrated it further.
var ErrSchema = errors.New("cql: schema version mismatch")

// migrations are the statements that take the schema from version i to i+1, in order.
// Each is idempotent (IF NOT EXISTS), so a migration interrupted half-way is simply run
// again. %[1]s is the keyspace.
var migrations = [][]string{
	// 1: the inboxes; see docs/storage.md for the layout and why.
	{
		`CREATE TABLE IF NOT EXISTS %[1]s.inbox_ids (
			user_id text, device_id text, id blob,
			bucket int, seq bigint, expires bigint,
			next_seq bigint static, head_bucket int static, tail_bucket int static,
			PRIMARY KEY ((user_id, device_id), id)
		) WITH gc_grace_seconds = 86400`,
		`CREATE TABLE IF NOT EXISTS %[1]s.inbox_messages (
			user_id text, device_id text, bucket int, seq bigint,
			id blob, kind tinyint, body blob, size int, sent bigint, expiry bigint,
			PRIMARY KEY ((user_id, device_id, bucket), seq)
		) WITH CLUSTERING ORDER BY (seq ASC) AND gc_grace_seconds = 86400`,
	},
	// 2: the media service's uploads and blobs (blobstore/cql); see docs/storage.md.
	{
		`CREATE TABLE IF NOT EXISTS %[1]s.media_uploads (
			id text, pos bigint, writer blob, len int,
			data_id blob static, size bigint static, synced bigint static, committed_as blob static,
			PRIMARY KEY ((id), pos)
		) WITH CLUSTERING ORDER BY (pos ASC) AND gc_grace_seconds = 86400`,
		`CREATE TABLE IF NOT EXISTS %[1]s.media_chunks (
			data_id blob, part int, pos bigint, writer blob, data blob,
			PRIMARY KEY ((data_id, part), pos, writer)
		) WITH CLUSTERING ORDER BY (pos ASC, writer ASC) AND gc_grace_seconds = 86400`,
		`CREATE TABLE IF NOT EXISTS %[1]s.media_blobs (
			digest blob, data_id blob, pos bigint, writer blob, len int,
			owner blob static, size bigint static,
			PRIMARY KEY ((digest), data_id, pos)
		) WITH gc_grace_seconds = 86400`,
	},
}

// lockTTL bounds how long a crashed migrator can keep others waiting.
const lockTTL = 120 * time.Second

// Migrate creates the keyspace of c if needed and brings its schema to SchemaVersion.
// It is idempotent and safe to run from several processes at once: a lightweight
// transaction on a lock row lets one of them apply the missing steps while the others
// wait for it, and each step is recorded once done.
func Migrate(ctx context.Context, c Config) error {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	cluster := c.cluster()
	cluster.Keyspace = ""
	// Schema changes wait for every node to agree: they take longer than a request.
	cluster.Timeout = max(cluster.Timeout, time.Minute)
	sess, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("cql: connect to %v: %w", c.Hosts, err)
	}
	defer sess.Close()
	repl := fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", c.Replication)
	if c.DataCenter != "" {
		repl = fmt.Sprintf("{'class': 'NetworkTopologyStrategy', '%s': %d}", c.DataCenter, c.Replication)
	}
	ddl := func(stmt string) error {
		if err := sess.Query(stmt).Consistency(gocql.All).ExecContext(ctx); err != nil {
			return fmt.Errorf("cql: schema of keyspace %s: %w", c.Keyspace, err)
		}
		return sess.AwaitSchemaAgreement(ctx)
	}
	if err := ddl(fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", c.Keyspace, repl)); err != nil {
		return err
	}
	if err := ddl(fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.schema_version (name text PRIMARY KEY, version int, owner blob)`, c.Keyspace)); err != nil {
		return err
	}
	owner := make([]byte, 16)
	rand.Read(owner)
	for {
		v, err := schemaVersion(ctx, sess, c)
		if err != nil {
			return err
		}
		if v == SchemaVersion {
			return nil
		}
		if v > SchemaVersion {
			return fmt.Errorf("%w: keyspace %s is at version %d, newer than this build's %d", ErrSchema, c.Keyspace, v, SchemaVersion)
		}
		applied, err := sess.Query(fmt.Sprintf(`INSERT INTO %s.schema_version (name, owner) VALUES ('lock', ?) IF NOT EXISTS USING TTL %d`,
			c.Keyspace, int(lockTTL/time.Second)), owner).SerialConsistency(gocql.LocalSerial).MapScanCASContext(ctx, map[string]any{})
		if err != nil {
			return fmt.Errorf("cql: lock schema of keyspace %s: %w", c.Keyspace, err)
		}
		if !applied {
			// Another migrator holds the lock: wait for it to finish or its lock to lapse.
			select {
			case <-ctx.Done():
				return fmt.Errorf("cql: waiting for another schema migration of %s: %w", c.Keyspace, ctx.Err())
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		err = migrateLocked(ctx, sess, c, ddl)
		// Release the lock whatever happened; a failed release lapses with its TTL.
		sess.Query(fmt.Sprintf(`DELETE FROM %s.schema_version WHERE name = 'lock' IF owner = ?`, c.Keyspace), owner).
			SerialConsistency(gocql.LocalSerial).MapScanCASContext(context.WithoutCancel(ctx), map[string]any{})
		if err != nil {
			return err
		}
	}
}

// migrateLocked applies the missing steps; the caller holds the lock.
func migrateLocked(ctx context.Context, sess *gocql.Session, c Config, ddl func(string) error) error {
	v, err := schemaVersion(ctx, sess, c)
	if err != nil {
		return err
	}
	for ; v < SchemaVersion; v++ {
		for _, stmt := range migrations[v] {
			if err := ddl(fmt.Sprintf(stmt, c.Keyspace)); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
		}
		if err := sess.Query(fmt.Sprintf(`UPDATE %s.schema_version SET version = ? WHERE name = 'schema'`, c.Keyspace), v+1).
			Consistency(c.Consistency).ExecContext(ctx); err != nil {
			return fmt.Errorf("cql: record schema version %d of %s: %w", v+1, c.Keyspace, err)
		}
	}
	return nil
}

// schemaVersion reads the version Migrate recorded: 0 when it never ran.
func schemaVersion(ctx context.Context, sess *gocql.Session, c Config) (int, error) {
	var v int
	err := sess.Query(fmt.Sprintf(`SELECT version FROM %s.schema_version WHERE name = 'schema'`, c.Keyspace)).
		Consistency(c.Consistency).ScanContext(ctx, &v)
	var reqErr gocql.RequestError
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return 0, nil
	case errors.As(err, &reqErr) && reqErr.Code() == gocql.ErrCodeInvalid:
		return 0, nil // no such keyspace or table: never migrated
	case err != nil:
		return 0, fmt.Errorf("cql: read schema version of %s: %w", c.Keyspace, err)
	}
	return v, nil
}
