// Package cql keeps the inboxes of [msgstore] in Apache Cassandra or ScyllaDB, for
// deployments that outgrow one machine; see docs/storage.md for the tables and why they
// are partitioned so.
//
// Start with [ParseURI] and [Migrate] (once per keyspace, from any number of processes),
// then [Open]. The store passes the msgstore contract suite (msgstoretest) against a real
// Cassandra 5.0.9.
//
// Each inbox has an index partition (inbox_ids: one row per message id, and static
// columns holding the inbox's next sequence number and its first and last time bucket)
// and one message partition per day bucket (inbox_messages, clustered by sequence
// number). An Append claims sequence numbers with one lightweight transaction on the
// index partition, which also inserts the id rows: appends to one inbox are serialized
// across every server, so order is total, a retried id is found, and Count is exact.
// The message rows are written after the claim; a retry of an Append that failed
// between the two writes the missing rows again. Every row carries a TTL to its
// message's expiry, and reads also skip expired messages by the store's clock.
//
// It uses github.com/apache/cassandra-gocql-driver/v2, the maintained continuation of
// github.com/gocql/gocql under the Apache Software Foundation: prepared statements,
// token-aware routing to a replica of each partition, LOCAL_QUORUM by default.
package cql

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// DefaultKeyspace is the keyspace when the address names none.
const DefaultKeyspace = "guardyn"

// Defaults of the tunables.
const (
	// BucketWidth is the time span of one message partition: a day keeps a partition of
	// a busy device small (MaxBatch messages of 1 KiB is 4 MiB) while a device's whole
	// backlog of a TTL of 30 days spans 30 partitions at most.
	BucketWidth = 24 * time.Hour
	// casRetries bounds the lightweight transactions one Append tries when other
	// servers keep appending to the same inbox.
	casRetries = 64
	// maxGroup is the most new messages one lightweight transaction claims, which keeps
	// its batch of index rows under Cassandra's batch size warning (5 KiB).
	maxGroup = 64
	// maxParallelInboxes bounds the inboxes one Append commits at once.
	maxParallelInboxes = 32
	// inChunk is the most ids one IN restriction carries.
	inChunk = 100
	// rowOverhead is what a message costs a Read's byte budget besides its body.
	rowOverhead = 64
)

// Config says which cluster and keyspace to use and how.
type Config struct {
	// Hosts are the contact points, host:port.
	Hosts []string
	// Keyspace holds the tables; DefaultKeyspace when empty.
	Keyspace string
	// DataCenter is the local data center: routing prefers its replicas and Migrate
	// replicates a new keyspace with NetworkTopologyStrategy there. Empty means a
	// single data center (SimpleStrategy, round robin over every host).
	DataCenter string
	// Consistency of reads and writes: LOCAL_QUORUM when zero. Lightweight transactions
	// use LOCAL_SERIAL.
	Consistency gocql.Consistency
	// Replication is the replication factor Migrate gives a new keyspace: 3 when zero.
	Replication int
	// Timeout bounds each request: 10 s when zero.
	Timeout time.Duration
	// InboxCap, when positive, is the most unexpired messages an inbox holds: an Append
	// that would take an inbox past it fails with msgstore.ErrFull. It is exact under
	// concurrent senders on any number of servers, as the count is read before the
	// lightweight transaction that any other append would make fail; it costs one
	// more read per Append, in parallel with the others.
	InboxCap int
	// Now is the clock expiry is checked against: time.Now when nil.
	Now func() time.Time
	// Tune, when set, adjusts the driver's configuration before connecting (observers,
	// TLS, authentication).
	Tune func(*gocql.ClusterConfig)
}

func (c Config) withDefaults() Config {
	if c.Keyspace == "" {
		c.Keyspace = DefaultKeyspace
	}
	if c.Consistency == 0 {
		c.Consistency = gocql.LocalQuorum
	}
	if c.Replication == 0 {
		c.Replication = 3
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if len(c.Hosts) == 0 {
		return errors.New("cql: no hosts")
	}
	if !keyspaceName.MatchString(c.Keyspace) {
		return fmt.Errorf("cql: keyspace %q must match %s", c.Keyspace, keyspaceName)
	}
	return nil
}

func (c Config) cluster() *gocql.ClusterConfig {
	cl := gocql.NewCluster(c.Hosts...)
	cl.Keyspace = c.Keyspace
	cl.Consistency = c.Consistency
	cl.SerialConsistency = gocql.LocalSerial
	cl.Timeout = c.Timeout
	cl.ConnectTimeout = c.Timeout
	fallback := gocql.RoundRobinHostPolicy()
	if c.DataCenter != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(c.DataCenter)
	}
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	if c.Tune != nil {
		c.Tune(cl)
	}
	return cl
}

// Store is a msgstore.Store on a CQL cluster.
type Store struct {
	cfg    Config
	sess   *gocql.Session
	closed atomic.Bool
	// queues holds the appends waiting for an inbox: one of them commits for all
	// (group commit), so that this process's appends to one inbox share one
	// lightweight transaction instead of competing for it; other processes still
	// compete, and retry.
	qmu    sync.Mutex
	queues map[msgstore.Inbox]*queue
}

// queue is the appends waiting for one inbox; busy while one of them commits.
type queue struct {
	waiting []*pending
	busy    bool
}

type pending struct {
	msgs []msgstore.Message
	done chan error
}

var _ msgstore.Store = (*Store)(nil)

// Open connects to the cluster and checks that Migrate brought the keyspace to
// SchemaVersion. The error names the hosts when none answers.
func Open(ctx context.Context, c Config) (*Store, error) {
	c = c.withDefaults()
	sess, err := Connect(ctx, c)
	if err != nil {
		return nil, err
	}
	return &Store{cfg: c, sess: sess, queues: make(map[msgstore.Inbox]*queue)}, nil
}

// Connect opens a session on the keyspace of c, configured as the store's (routing,
// consistency, timeouts), after checking that Migrate brought the keyspace to
// SchemaVersion: for the other tables of the keyspace, such as the media chunks of
// blobstore/cql. The error names the hosts when none answers.
func Connect(ctx context.Context, c Config) (*gocql.Session, error) {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	// The schema is checked from a session without a keyspace, so that a keyspace
	// never created is reported as such.
	cl := c.cluster()
	cl.Keyspace = ""
	check, err := cl.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cql: connect to %v: %w", c.Hosts, err)
	}
	v, err := schemaVersion(ctx, check, c)
	check.Close()
	if err == nil && v != SchemaVersion {
		err = fmt.Errorf("%w: keyspace %s is at version %d, this build needs %d (run tools/cqlschema)", ErrSchema, c.Keyspace, v, SchemaVersion)
	}
	if err != nil {
		return nil, err
	}
	sess, err := c.cluster().CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cql: connect to %v: %w", c.Hosts, err)
	}
	return sess, nil
}

// Close releases the connections. Later calls fail with msgstore.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return msgstore.ErrClosed
	}
	s.sess.Close()
	return nil
}

// check returns the error a call must fail with before it starts.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return msgstore.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cql: %w", err)
	}
	return nil
}

// wrap gives a driver error context; a canceled context stays recognizable.
func (s *Store) wrap(ctx context.Context, what string, in msgstore.Inbox, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", err, cerr)
	}
	switch {
	case s.closed.Load():
		err = fmt.Errorf("%w: %w", msgstore.ErrClosed, err)
	case unavailable(err):
		err = fmt.Errorf("%w: %w", msgstore.ErrUnavailable, err)
	}
	return fmt.Errorf("cql: %s %s: %w", what, in, err)
}

// unavailable tells the errors of a cluster that cannot answer now (too few replicas,
// timeouts, no connection) from those of a bad request.
func unavailable(err error) bool {
	var reqErr gocql.RequestError
	if errors.As(err, &reqErr) {
		switch reqErr.Code() {
		case gocql.ErrCodeUnavailable, gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout,
			gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping, gocql.ErrCodeTruncate,
			gocql.ErrCodeWriteFailure, gocql.ErrCodeReadFailure, gocql.ErrCodeServer, gocql.ErrCodeCASWriteUnknown:
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.Is(err, gocql.ErrNoConnections) || errors.Is(err, gocql.ErrTimeoutNoResponse) ||
		errors.Is(err, gocql.ErrConnectionClosed) || errors.Is(err, gocql.ErrSessionClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr)
}

// Ready reports whether the cluster answers a query within ctx: the readiness check
// of a server that keeps its inboxes here.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return msgstore.ErrClosed
	}
	var v string
	if err := s.sess.Query(`SELECT release_version FROM system.local`).ScanContext(ctx, &v); err != nil {
		return fmt.Errorf("cql: %w: %w", msgstore.ErrUnavailable, err)
	}
	return nil
}

// bucketOf is the day bucket of t.
func bucketOf(t time.Time) int32 { return int32(t.Unix() / int64(BucketWidth/time.Second)) }

// nanos stores a time as Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// ttlOf is the TTL in seconds of a row expiring at expiry, 0 for none; Cassandra caps
// TTLs at 20 years.
func ttlOf(now, expiry time.Time) int {
	if expiry.IsZero() {
		return 0
	}
	const maxTTL = 20 * 365 * 24 * 3600
	d := expiry.Sub(now)
	secs := int64((d + time.Second - 1) / time.Second)
	return int(max(1, min(secs, maxTTL)))
}

// Cursor layout: version byte, bucket (4 bytes), sequence number (8 bytes).
const (
	cursorVersion = 1
	cursorSize    = 13
)

type position struct {
	bucket int32
	seq    int64
}

func (p position) cursor() msgstore.Cursor {
	c := make([]byte, cursorSize)
	c[0] = cursorVersion
	binary.BigEndian.PutUint32(c[1:], uint32(p.bucket))
	binary.BigEndian.PutUint64(c[5:], uint64(p.seq))
	return c
}

// parseCursor reads a cursor; ok is false for the start of the inbox.
func parseCursor(c msgstore.Cursor) (p position, ok bool, err error) {
	if len(c) == 0 {
		return position{}, false, nil
	}
	if len(c) != cursorSize || c[0] != cursorVersion {
		return position{}, false, fmt.Errorf("%w: cursor of %d bytes is not one of this store's", msgstore.ErrInvalid, len(c))
	}
	return position{int32(binary.BigEndian.Uint32(c[1:])), int64(binary.BigEndian.Uint64(c[5:]))}, true, nil
}

// head is what the static columns of an inbox's index partition say.
type head struct {
	exists     bool // the partition has its static row
	nextSeq    int64
	headBucket int32
	tailBucket int32
}

func (s *Store) readHead(ctx context.Context, in msgstore.Inbox) (head, error) {
	var nextSeq *int64
	var hb, tb *int32
	err := s.sess.Query(`SELECT next_seq, head_bucket, tail_bucket FROM inbox_ids WHERE user_id = ? AND device_id = ? LIMIT 1`,
		in.UserID, in.DeviceID).ScanContext(ctx, &nextSeq, &hb, &tb)
	if errors.Is(err, gocql.ErrNotFound) || (err == nil && nextSeq == nil) {
		return head{}, nil
	}
	if err != nil {
		return head{}, err
	}
	h := head{exists: true, nextSeq: *nextSeq}
	if hb != nil {
		h.headBucket = *hb
	}
	h.tailBucket = h.headBucket
	if tb != nil {
		h.tailBucket = *tb
	}
	return h, nil
}

// idRow is one row of the index partition.
type idRow struct {
	bucket int32
	seq    int64
	// written is the write time of the row, in microseconds: its tombstone must be later.
	written int64
}

// lookup finds which of ids the inbox holds.
func (s *Store) lookup(ctx context.Context, in msgstore.Inbox, ids []msgstore.ID) (map[msgstore.ID]idRow, error) {
	found := make(map[msgstore.ID]idRow)
	for start := 0; start < len(ids); start += inChunk {
		chunk := ids[start:min(start+inChunk, len(ids))]
		keys := make([][]byte, len(chunk))
		for i := range chunk {
			keys[i] = chunk[i][:]
		}
		iter := s.sess.Query(`SELECT id, bucket, seq, WRITETIME(seq) FROM inbox_ids WHERE user_id = ? AND device_id = ? AND id IN ?`,
			in.UserID, in.DeviceID, keys).IterContext(ctx)
		var id []byte
		var r idRow
		for iter.Scan(&id, &r.bucket, &r.seq, &r.written) {
			if len(id) == len(msgstore.ID{}) {
				found[msgstore.ID(id)] = r
			}
		}
		if err := iter.Close(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// Append adds messages to their inboxes; see msgstore.Store. The messages of one inbox
// cost one read of its head, one read of their ids, one lightweight transaction and one
// write per message. The inbox of the first message commits first, the others then in
// parallel.
func (s *Store) Append(ctx context.Context, msgs []msgstore.Message) error {
	if err := msgstore.CheckMessages(msgs); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	// Group by inbox, keeping the order within each.
	var order []msgstore.Inbox
	byInbox := make(map[msgstore.Inbox][]msgstore.Message)
	for _, m := range msgs {
		if _, ok := byInbox[m.Inbox]; !ok {
			order = append(order, m.Inbox)
		}
		byInbox[m.Inbox] = append(byInbox[m.Inbox], m)
	}
	// The first inbox commits before the others, so that what it holds is visible no
	// later than what they hold (a group log entry before the notices naming it); the
	// others, which no one orders, commit in parallel: a group send to n members waits
	// for two lightweight transactions, not n+1.
	if err := s.appendInbox(ctx, order[0], byInbox[order[0]]); err != nil {
		return s.wrap(ctx, "append to", order[0], err)
	}
	rest := order[1:]
	errs := make([]error, len(rest))
	sem := make(chan struct{}, maxParallelInboxes)
	var wg sync.WaitGroup
	for i, in := range rest {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.appendInbox(ctx, in, byInbox[in]); err != nil {
				errs[i] = s.wrap(ctx, "append to", in, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// appendInbox queues msgs for their inbox and waits until they are committed, by this
// call or by a concurrent one that took them along.
func (s *Store) appendInbox(ctx context.Context, in msgstore.Inbox, msgs []msgstore.Message) error {
	p := &pending{msgs: msgs, done: make(chan error, 1)}
	s.qmu.Lock()
	q := s.queues[in]
	if q == nil {
		q = &queue{}
		s.queues[in] = q
	}
	q.waiting = append(q.waiting, p)
	lead := !q.busy
	q.busy = true
	s.qmu.Unlock()
	if lead {
		// Commit what is queued, group by group, until the queue is empty. The groups
		// are committed without this caller's cancellation, as they hold others' messages.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*s.cfg.Timeout)
		defer cancel()
		for {
			s.qmu.Lock()
			group := takeGroup(q)
			if len(group) == 0 {
				q.busy = false
				delete(s.queues, in)
				s.qmu.Unlock()
				break
			}
			s.qmu.Unlock()
			var all []msgstore.Message
			for _, g := range group {
				all = append(all, g.msgs...)
			}
			err := s.commit(cctx, in, all)
			for _, g := range group {
				g.done <- err
			}
		}
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeGroup removes from q the appends one commit takes: at least one, and then as many
// as keep the group within maxGroup messages.
func takeGroup(q *queue) []*pending {
	n, total := 0, 0
	for n < len(q.waiting) && (n == 0 || total+len(q.waiting[n].msgs) <= maxGroup) {
		total += len(q.waiting[n].msgs)
		n++
	}
	group := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	return group
}

// commit stores msgs of one inbox, claiming sequence numbers for at most maxGroup new
// messages per lightweight transaction.
func (s *Store) commit(ctx context.Context, in msgstore.Inbox, msgs []msgstore.Message) error {
	now := s.cfg.Now()
	// Drop duplicates within the call and messages expired already (accepted, never
	// returned).
	seen := make(map[msgstore.ID]bool, len(msgs))
	var keep []msgstore.Message
	for _, m := range msgs {
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		if !m.Expiry.IsZero() && !m.Expiry.After(now) {
			continue
		}
		keep = append(keep, m)
	}
	for start := 0; start < len(keep); start += maxGroup {
		if err := s.commitChunk(ctx, in, keep[start:min(start+maxGroup, len(keep))], now); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) commitChunk(ctx context.Context, in msgstore.Inbox, msgs []msgstore.Message, now time.Time) error {
	ids := make([]msgstore.ID, len(msgs))
	for i := range msgs {
		ids[i] = msgs[i].ID
	}
	for attempt := 0; ; attempt++ {
		// The head, the ids and (with a cap) the count are read at once: round trips
		// in parallel.
		var h head
		var herr, cerr error
		held := 0
		var wg sync.WaitGroup
		wg.Go(func() { h, herr = s.readHead(ctx, in) })
		if s.cfg.InboxCap > 0 {
			wg.Go(func() { held, cerr = s.count(ctx, in) })
		}
		have, err := s.lookup(ctx, in, ids)
		wg.Wait()
		if err = errors.Join(herr, cerr, err); err != nil {
			return err
		}
		// Ids already stored need no claim, but their message rows may be missing if
		// the Append that stored them failed half-way: write those again.
		var fresh, repair []msgstore.Message
		var repairAt []idRow
		for _, m := range msgs {
			if r, ok := have[m.ID]; ok {
				repair, repairAt = append(repair, m), append(repairAt, r)
				continue
			}
			fresh = append(fresh, m)
		}
		if err := s.repair(ctx, in, repair, repairAt, now); err != nil {
			return err
		}
		if len(fresh) == 0 {
			return nil
		}
		if s.cfg.InboxCap > 0 && held+len(fresh) > s.cfg.InboxCap {
			return fmt.Errorf("%w: %d messages held, %d more would pass the cap of %d", msgstore.ErrFull, held, len(fresh), s.cfg.InboxCap)
		}
		bucket := max(h.headBucket, bucketOf(now))
		tail := h.tailBucket
		if !h.exists {
			tail = bucket
		}
		next := h.nextSeq + int64(len(fresh))
		b := s.sess.Batch(gocql.UnloggedBatch)
		if h.exists {
			b.Query(`UPDATE inbox_ids SET next_seq = ?, head_bucket = ?, tail_bucket = ? WHERE user_id = ? AND device_id = ? IF next_seq = ?`,
				next, bucket, tail, in.UserID, in.DeviceID, h.nextSeq)
		} else {
			b.Query(`UPDATE inbox_ids SET next_seq = ?, head_bucket = ?, tail_bucket = ? WHERE user_id = ? AND device_id = ? IF next_seq = null`,
				next, bucket, tail, in.UserID, in.DeviceID)
		}
		for i, m := range fresh {
			b.Query(`INSERT INTO inbox_ids (user_id, device_id, id, bucket, seq, expires) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?`,
				in.UserID, in.DeviceID, m.ID[:], bucket, h.nextSeq+int64(i), expiresOf(m.Expiry), ttlOf(now, m.Expiry))
		}
		applied, iter, err := b.MapExecCASContext(ctx, map[string]any{})
		if iter != nil {
			iter.Close()
		}
		if err != nil {
			return fmt.Errorf("claim %d sequence numbers: %w", len(fresh), err)
		}
		if !applied {
			// Another server appended to this inbox since we read its head: read again.
			if attempt >= casRetries {
				return fmt.Errorf("claim %d sequence numbers: %d attempts lost to concurrent appends", len(fresh), attempt+1)
			}
			continue
		}
		at := make([]idRow, len(fresh))
		for i := range fresh {
			at[i] = idRow{bucket: bucket, seq: h.nextSeq + int64(i)}
		}
		return s.writeMessages(ctx, in, fresh, at, now)
	}
}

// expiresOf is the expiry kept in the index, where Count filters on it: never is the
// largest time.
func expiresOf(t time.Time) int64 {
	if t.IsZero() {
		return math.MaxInt64
	}
	return t.UnixNano()
}

// writeMessages writes the message rows, in parallel: a batch would save nothing within
// one partition and large bodies would exceed the batch size limit.
func (s *Store) writeMessages(ctx context.Context, in msgstore.Inbox, msgs []msgstore.Message, at []idRow, now time.Time) error {
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	for i := range msgs {
		wg.Go(func() {
			m := &msgs[i]
			errs[i] = s.sess.Query(`INSERT INTO inbox_messages (user_id, device_id, bucket, seq, id, kind, body, size, sent, expiry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
				in.UserID, in.DeviceID, at[i].bucket, at[i].seq, m.ID[:], int8(m.Kind), nonNil(m.Body), len(m.Body), nanos(m.Timestamp), nanos(m.Expiry), ttlOf(now, m.Expiry)).
				Idempotent(true).ExecContext(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write message rows: %w", err)
	}
	return nil
}

// nonNil keeps an empty body from being stored as null.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// repair writes again the message rows of ids the index holds but whose rows are
// missing, left so by an Append that failed after its claim.
func (s *Store) repair(ctx context.Context, in msgstore.Inbox, msgs []msgstore.Message, at []idRow, now time.Time) error {
	var missing []msgstore.Message
	var missingAt []idRow
	for i, r := range at {
		var seq int64
		err := s.sess.Query(`SELECT seq FROM inbox_messages WHERE user_id = ? AND device_id = ? AND bucket = ? AND seq = ?`,
			in.UserID, in.DeviceID, r.bucket, r.seq).ScanContext(ctx, &seq)
		switch {
		case errors.Is(err, gocql.ErrNotFound):
			missing, missingAt = append(missing, msgs[i]), append(missingAt, r)
		case err != nil:
			return err
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return s.writeMessages(ctx, in, missing, missingAt, now)
}

// row is a message row without its body.
type row struct {
	pos    position
	id     msgstore.ID
	kind   msgstore.Kind
	size   int
	sent   int64
	expiry int64
}

// scan lists up to limit unexpired rows of inbox after the cursor, without bodies, and
// reports where the scan may start next time (for advancing the inbox's tail).
func (s *Store) scan(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit int) ([]row, error) {
	from, ok, err := parseCursor(after)
	if err != nil {
		return nil, err
	}
	h, err := s.readHead(ctx, in)
	if err != nil || !h.exists {
		return nil, err
	}
	now := s.cfg.Now()
	if !ok {
		from = position{bucket: h.tailBucket, seq: -1}
	}
	var rows []row
	for b := from.bucket; b <= h.headBucket && len(rows) < limit; b++ {
		after := int64(-1)
		if b == from.bucket {
			after = from.seq
		}
		iter := s.sess.Query(`SELECT seq, id, kind, size, sent, expiry FROM inbox_messages WHERE user_id = ? AND device_id = ? AND bucket = ? AND seq > ?`,
			in.UserID, in.DeviceID, b, after).PageSize(min(limit, 1000)).IterContext(ctx)
		var r row
		var id []byte
		var kind int8
		seenRow := false
		for len(rows) < limit && iter.Scan(&r.pos.seq, &id, &kind, &r.size, &r.sent, &r.expiry) {
			seenRow = true
			if r.expiry != 0 && !fromNanos(r.expiry).After(now) {
				continue
			}
			if len(id) != len(msgstore.ID{}) {
				iter.Close()
				return nil, fmt.Errorf("%w: message id of %d bytes at %d/%d", msgstore.ErrCorrupt, len(id), b, r.pos.seq)
			}
			r.pos.bucket, r.id, r.kind = b, msgstore.ID(id), msgstore.Kind(kind)
			rows = append(rows, r)
		}
		if err := iter.Close(); err != nil {
			return nil, err
		}
		// A bucket behind the head by more than a day that holds nothing stays empty:
		// appends go to the head. Move the tail past it so that later reads from the
		// start skip it and its tombstones.
		if !ok && !seenRow && b == h.tailBucket && b < h.headBucket-1 && b < bucketOf(now)-1 {
			if err := s.sess.Query(`UPDATE inbox_ids SET tail_bucket = ? WHERE user_id = ? AND device_id = ?`,
				b+1, in.UserID, in.DeviceID).ExecContext(ctx); err != nil {
				return nil, err
			}
			h.tailBucket = b + 1
		}
	}
	return rows, nil
}

// Read returns messages after the cursor within limit and maxBytes; see msgstore.Store.
// It lists the rows without bodies first, then fetches only the bodies that fit the
// budget, so the memory it takes is bounded by the budget.
func (s *Store) Read(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit, maxBytes int) ([]msgstore.Message, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if err := msgstore.CheckLimit(limit); err != nil {
		return nil, err
	}
	if err := msgstore.CheckReadBytes(maxBytes); err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.scan(ctx, in, after, limit)
	if err != nil {
		return nil, s.wrapRead(ctx, in, err)
	}
	used := 0
	for i, r := range rows {
		used += r.size + rowOverhead
		if i > 0 && used > maxBytes {
			rows = rows[:i]
			break
		}
	}
	bodies, err := s.bodies(ctx, in, rows)
	if err != nil {
		return nil, s.wrap(ctx, "read bodies of", in, err)
	}
	msgs := make([]msgstore.Message, 0, len(rows))
	for _, r := range rows {
		body, ok := bodies[r.pos]
		if !ok {
			continue // deleted since the scan
		}
		msgs = append(msgs, msgstore.Message{
			Inbox: in, ID: r.id, Kind: r.kind, Body: body,
			Timestamp: fromNanos(r.sent), Expiry: fromNanos(r.expiry), Cursor: r.pos.cursor(),
		})
	}
	return msgs, nil
}

func (s *Store) wrapRead(ctx context.Context, in msgstore.Inbox, err error) error {
	if errors.Is(err, msgstore.ErrInvalid) || errors.Is(err, msgstore.ErrCorrupt) {
		return err
	}
	return s.wrap(ctx, "read", in, err)
}

// bodies fetches the bodies of rows, bucket by bucket.
func (s *Store) bodies(ctx context.Context, in msgstore.Inbox, rows []row) (map[position][]byte, error) {
	out := make(map[position][]byte, len(rows))
	for start := 0; start < len(rows); {
		b := rows[start].pos.bucket
		var seqs []int64
		end := start
		for end < len(rows) && rows[end].pos.bucket == b && len(seqs) < inChunk {
			seqs = append(seqs, rows[end].pos.seq)
			end++
		}
		iter := s.sess.Query(`SELECT seq, body FROM inbox_messages WHERE user_id = ? AND device_id = ? AND bucket = ? AND seq IN ?`,
			in.UserID, in.DeviceID, b, seqs).PageSize(16).IterContext(ctx)
		var seq int64
		var body []byte
		for iter.Scan(&seq, &body) {
			out[position{b, seq}] = nonNil(body)
			body = nil
		}
		if err := iter.Close(); err != nil {
			return nil, err
		}
		start = end
	}
	return out, nil
}

// ReadIDs lists ids after the cursor; see msgstore.Store. It never reads a body.
func (s *Store) ReadIDs(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit int) ([]msgstore.ID, msgstore.Cursor, error) {
	if err := in.Validate(); err != nil {
		return nil, nil, err
	}
	if err := msgstore.CheckLimit(limit); err != nil {
		return nil, nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	rows, err := s.scan(ctx, in, after, limit)
	if err != nil {
		return nil, nil, s.wrapRead(ctx, in, err)
	}
	if len(rows) == 0 {
		return nil, after, nil
	}
	ids := make([]msgstore.ID, len(rows))
	for i, r := range rows {
		ids[i] = r.id
	}
	return ids, rows[len(rows)-1].pos.cursor(), nil
}

// Get reads one message by id; see msgstore.Store. It looks the id up in the index
// partition, then reads its one message row: two single-partition reads. An id whose
// message row is missing (an Append that failed after its claim and was not retried)
// is not found, as Read would not list it either.
func (s *Store) Get(ctx context.Context, in msgstore.Inbox, id msgstore.ID) (msgstore.Message, error) {
	if err := in.Validate(); err != nil {
		return msgstore.Message{}, err
	}
	if err := s.check(ctx); err != nil {
		return msgstore.Message{}, err
	}
	notFound := fmt.Errorf("cql: get %s/%x: %w", in, id, msgstore.ErrNotFound)
	have, err := s.lookup(ctx, in, []msgstore.ID{id})
	if err != nil {
		return msgstore.Message{}, s.wrap(ctx, "get from", in, err)
	}
	r, ok := have[id]
	if !ok {
		return msgstore.Message{}, notFound
	}
	var stored []byte
	var kind int8
	var body []byte
	var sent, expiry int64
	err = s.sess.Query(`SELECT id, kind, body, sent, expiry FROM inbox_messages WHERE user_id = ? AND device_id = ? AND bucket = ? AND seq = ?`,
		in.UserID, in.DeviceID, r.bucket, r.seq).ScanContext(ctx, &stored, &kind, &body, &sent, &expiry)
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return msgstore.Message{}, notFound
	case err != nil:
		return msgstore.Message{}, s.wrap(ctx, "get from", in, err)
	case string(stored) != string(id[:]):
		return msgstore.Message{}, fmt.Errorf("cql: get %s/%x: %w: index names row %d/%d, which holds id %x", in, id, msgstore.ErrCorrupt, r.bucket, r.seq, stored)
	case expiry != 0 && !fromNanos(expiry).After(s.cfg.Now()):
		return msgstore.Message{}, notFound
	}
	pos := position{bucket: r.bucket, seq: r.seq}
	return msgstore.Message{
		Inbox: in, ID: id, Kind: msgstore.Kind(kind), Body: nonNil(body),
		Timestamp: fromNanos(sent), Expiry: fromNanos(expiry), Cursor: pos.cursor(),
	}, nil
}

// Delete removes acknowledged messages; see msgstore.Store. It looks the ids up in the
// index, deletes their message rows, then their index rows, so that a crash in between
// leaves a message to be delivered again rather than an id without its message.
func (s *Store) Delete(ctx context.Context, in msgstore.Inbox, ids []msgstore.ID) error {
	if err := in.Validate(); err != nil {
		return err
	}
	if err := msgstore.CheckIDs(ids); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	have, err := s.lookup(ctx, in, ids)
	if err != nil {
		return s.wrap(ctx, "look up ids in", in, err)
	}
	if len(have) == 0 {
		return nil
	}
	// Message rows: one batch per bucket partition (single-partition batches are
	// applied as one mutation).
	byBucket := make(map[int32][]int64)
	for _, r := range have {
		byBucket[r.bucket] = append(byBucket[r.bucket], r.seq)
	}
	for bucket, seqs := range byBucket {
		for start := 0; start < len(seqs); start += inChunk {
			chunk := seqs[start:min(start+inChunk, len(seqs))]
			if err := s.sess.Query(`DELETE FROM inbox_messages WHERE user_id = ? AND device_id = ? AND bucket = ? AND seq IN ?`,
				in.UserID, in.DeviceID, bucket, chunk).Idempotent(true).ExecContext(ctx); err != nil {
				return s.wrap(ctx, "delete messages of", in, err)
			}
		}
	}
	// Index rows were written by a lightweight transaction, with the timestamp of its
	// ballot, which may be ahead of this clock: each tombstone comes after its row.
	b := s.sess.Batch(gocql.UnloggedBatch)
	nowMicros := time.Now().UnixMicro()
	for id, r := range have {
		b.Query(`DELETE FROM inbox_ids USING TIMESTAMP ? WHERE user_id = ? AND device_id = ? AND id = ?`,
			max(nowMicros, r.written+1), in.UserID, in.DeviceID, id[:])
		if b.Size() == inChunk {
			if err := b.ExecContext(ctx); err != nil {
				return s.wrap(ctx, "delete ids of", in, err)
			}
			b = s.sess.Batch(gocql.UnloggedBatch)
		}
	}
	if b.Size() > 0 {
		if err := b.ExecContext(ctx); err != nil {
			return s.wrap(ctx, "delete ids of", in, err)
		}
	}
	return nil
}

// Count returns how many unexpired ids the inbox's index holds; see msgstore.Store. It
// filters within the one index partition.
func (s *Store) Count(ctx context.Context, in msgstore.Inbox) (int, error) {
	if err := in.Validate(); err != nil {
		return 0, err
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	n, err := s.count(ctx, in)
	if err != nil {
		return 0, s.wrap(ctx, "count", in, err)
	}
	return n, nil
}

func (s *Store) count(ctx context.Context, in msgstore.Inbox) (int, error) {
	var n int64
	err := s.sess.Query(`SELECT COUNT(id) FROM inbox_ids WHERE user_id = ? AND device_id = ? AND expires > ? ALLOW FILTERING`,
		in.UserID, in.DeviceID, s.cfg.Now().UnixNano()).ScanContext(ctx, &n)
	return int(n), err
}

// DeleteInbox removes every message of the inbox: its message partitions, then the rows
// of its index, whose head stays so that sequence numbers keep growing.
func (s *Store) DeleteInbox(ctx context.Context, in msgstore.Inbox) error {
	if err := in.Validate(); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	h, err := s.readHead(ctx, in)
	if err != nil {
		return s.wrap(ctx, "delete", in, err)
	}
	if !h.exists {
		return nil
	}
	for b := h.tailBucket; b <= h.headBucket; b++ {
		if err := s.sess.Query(`DELETE FROM inbox_messages WHERE user_id = ? AND device_id = ? AND bucket = ?`,
			in.UserID, in.DeviceID, b).Idempotent(true).ExecContext(ctx); err != nil {
			return s.wrap(ctx, "delete", in, err)
		}
	}
	var latest int64
	if err := s.sess.Query(`SELECT MAX(WRITETIME(seq)) FROM inbox_ids WHERE user_id = ? AND device_id = ?`,
		in.UserID, in.DeviceID).ScanContext(ctx, &latest); err != nil && !errors.Is(err, gocql.ErrNotFound) {
		return s.wrap(ctx, "delete", in, err)
	}
	if err := s.sess.Query(`DELETE FROM inbox_ids USING TIMESTAMP ? WHERE user_id = ? AND device_id = ? AND id >= ?`,
		max(time.Now().UnixMicro(), latest+1), in.UserID, in.DeviceID, []byte{}).ExecContext(ctx); err != nil {
		return s.wrap(ctx, "delete", in, err)
	}
	return nil
}
