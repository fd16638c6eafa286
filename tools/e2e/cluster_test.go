package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	blobembedded "github.com/guardyn/guardyn/libs/blobstore/embedded"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/bus/natstest"
	"github.com/guardyn/guardyn/libs/cassandratest"
	"github.com/guardyn/guardyn/libs/client"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/kv/tikv"
	"github.com/guardyn/guardyn/libs/kv/tikv/tikvtest"
	"github.com/guardyn/guardyn/libs/msgstore/cql"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	"github.com/guardyn/guardyn/tools/clienttest"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// TestMain lets the cluster test start its nats-server processes (natstest) and stops
// the Cassandra this binary started, if it started one (cassandratest).
func TestMain(m *testing.M) {
	natstest.ServeIfChild()
	os.Exit(cassandratest.Main(m))
}

// waitForCluster dials the NATS cluster until JetStream has elected its leader, so that
// the platform, which fails at once when JetStream does not answer, starts on it.
func waitForCluster(t *testing.T, o bus.ClusterOptions) *bus.Bus {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := bus.Dial(ctx, o)
		cancel()
		if err == nil {
			t.Cleanup(func() { b.Close() })
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS cluster not ready in 90 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cqlCount counts the rows of table in c's keyspace whose column equals value, or all its
// rows when column is empty: a full scan, for the few hundred rows of one test's keyspace.
func cqlCount(t *testing.T, c cql.Config, table, column, value string) int {
	t.Helper()
	sess, err := cql.Connect(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	q := fmt.Sprintf("SELECT COUNT(*) FROM %s.%s", c.Keyspace, table)
	var args []any
	if column != "" {
		q += " WHERE " + column + " = ? ALLOW FILTERING"
		args = append(args, value)
	}
	var n int64
	if err := sess.Query(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return int(n)
}

// TestWalkthroughOnClusterBackendsMockTiKV runs the walkthrough's flows (register, link a
// second device, 1:1 messages both ways, a group, a file) over real gRPC against the
// all-in-one platform on the distributed backends together, as an operator configures
// them with --kv=tikv://..., --messages=cql://... and --nats=nats://a,b,c: the kv store on
// client-go's in-process mock TiKV (no TiKV can run here), the inboxes, group logs and
// media chunks on a real Cassandra (the shared one of tools/ci/with-cassandra.sh, or one
// this binary starts), and the bus on three nats-server processes with three replicas per
// stream. Each backend really holds the data: rows in Cassandra, accounts in TiKV, the
// streams on the cluster with three replicas, and no embedded store file in the data dir.
// A stream leader is killed (SIGKILL) during a burst of sends: the burst goes on, and
// every message the server acknowledged reaches its recipient.
func TestWalkthroughOnClusterBackendsMockTiKV(t *testing.T) {
	began := time.Now()
	cqlAddr := cassandratest.Addr(t)
	cl := natstest.Start(t, "guardyn", "s3cret")
	natsOpts := bus.ClusterOptions{URLs: strings.Join(cl.URLs, ","), User: "guardyn", Password: "s3cret", Replicas: 3}

	uri := fmt.Sprintf("cql://%s/w%d?replication=1", cqlAddr, time.Now().UnixNano()%1e12)
	cqlCfg, err := cql.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := cql.Migrate(context.Background(), cqlCfg); err != nil {
		t.Fatal(err)
	}
	store, _ := tikvtest.Open(t, t.TempDir(), tikv.Options{}, nil)
	admin := waitForCluster(t, natsOpts)
	t.Logf("backends ready in %v", time.Since(began))

	p := clienttest.StartWith(t, func(c *platform.Config) {
		c.KVStore = kvbackend.Cluster(store)
		c.Messages = uri
		c.NATS = natsOpts
	})
	// One context for the whole walkthrough: on a loaded CI machine it takes minutes, more
	// than clienttest.Context's one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Register, link, 1:1 both ways.
	alice, bob, carol := p.Register(t, "alice"), p.Register(t, "bob"), p.Register(t, "carol")
	bob2 := p.Link(t, bob, "bob-laptop")
	clienttest.Drain(t, bob)
	if n := countPrefix(t, store, "auth/"); n == 0 {
		t.Fatal("nothing under auth/ in TiKV: the platform kept its accounts elsewhere")
	}
	if _, err := alice.Send(ctx, "bob", "hi bob"); err != nil {
		t.Fatal(err)
	}
	// Undelivered, the message waits in both of bob's inboxes in Cassandra.
	if n := cqlCount(t, cqlCfg, "inbox_messages", "", ""); n < 2 {
		t.Fatalf("%d inbox rows in Cassandra after a message to two offline devices, want 2 or more", n)
	}
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2} {
		if got := messages(clienttest.Drain(t, c)); !slices.Equal(got, []string{"hi bob"}) {
			t.Fatalf("%s got %q", name, got)
		}
	}
	if _, err := bob2.Send(ctx, "alice", "hi alice, from the laptop"); err != nil {
		t.Fatal(err)
	}
	if got := messages(clienttest.Drain(t, alice)); !slices.Equal(got, []string{"hi alice, from the laptop"}) {
		t.Fatalf("alice got %q", got)
	}

	// A group: its log lives in Cassandra's inboxes too.
	if err := alice.CreateGroup(ctx, "trip", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, "trip", "hello trip"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2, "carol": carol} {
		if got := groupEvents(t, c, "trip"); !slices.Equal(got, []string{"joined", "alice: hello trip"}) {
			t.Fatalf("%s saw %q of the group", name, got)
		}
	}
	if n := cqlCount(t, cqlCfg, "inbox_ids", "user_id", "msg-group-log"); n == 0 {
		t.Fatal("no group log entry in Cassandra after a group message")
	}

	// A file: its chunks are in Cassandra.
	sendMarkedFile(t, alice, bob, "cluster-walkthrough")
	if n := cqlCount(t, cqlCfg, "media_chunks", "", ""); n == 0 {
		t.Fatal("no media chunk in Cassandra after a file was sent")
	}
	clienttest.Drain(t, bob2)

	// Every stream and bucket the platform made is on the cluster with three replicas.
	sctx, cancelStreams := context.WithTimeout(ctx, time.Minute)
	defer cancelStreams()
	var streams []string
	names := admin.JetStream().StreamNames(sctx)
	for name := range names.Name() {
		streams = append(streams, name)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{bus.StreamAuthEvents, bus.StreamNotify, "KV_" + bus.BucketPresence} {
		if !slices.Contains(streams, want) {
			t.Errorf("stream %s not on the NATS cluster (it has %q)", want, streams)
		}
	}
	for _, name := range streams {
		s, err := admin.JetStream().Stream(sctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, info.Config.Replicas)
		}
	}
	s, err := admin.JetStream().Stream(sctx, bus.StreamAuthEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream %s has no leader: %+v", bus.StreamAuthEvents, info.Cluster)
	}
	leader := info.Cluster.Leader

	// Kill the auth stream's leader in the middle of a burst of sends. A send that fails
	// (its outcome unknown) is retried as a person would send again; only acknowledged
	// ones are counted, and each must reach bob: his phone from its backlog afterwards, his
	// laptop live, woken over the cluster while it loses a server.
	laptop := listenLive(t, bob2)
	const burst, killAfter = 30, 10
	acked := make(chan string, burst)
	sendErr := make(chan error, 1)
	var retried atomic.Int64
	go func() {
		defer close(acked)
		for i := range burst {
			body := fmt.Sprintf("burst %d", i)
			for {
				if _, err := alice.Send(ctx, "bob", body); err == nil {
					acked <- body
					break
				} else if ctx.Err() != nil {
					sendErr <- fmt.Errorf("%s: %w", body, err)
					return
				}
				retried.Add(1)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	var want []string
	for body := range acked {
		if want = append(want, body); len(want) == killAfter {
			cl.Kill(t, leader)
			t.Logf("killed NATS server %s, the leader of %s, after %d acknowledged sends", leader, bus.StreamAuthEvents, killAfter)
		}
	}
	select {
	case err := <-sendErr:
		t.Fatalf("the burst stopped after %d of %d sends: %v", len(want), burst, err)
	default:
	}
	t.Logf("%d sends acknowledged, %d failed attempts retried", len(want), retried.Load())
	got := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, m := range messages(clienttest.Drain(t, bob)) {
			got[m] = true
		}
		var missing []string
		for _, w := range want {
			if !got[w] {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged messages never reached bob after %s was killed: %q", len(missing), leader, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	live := map[string]bool{}
	for len(live) < len(want) {
		if ev := laptop.next(t, client.EventMessage); slices.Contains(want, ev.Body) {
			live[ev.Body] = true
		}
	}
	laptop.stop()

	// The two servers left carry on: a new device of carol (an auth event on the stream
	// that lost its leader, which tells messaging of the device) gets alice's next
	// message, and the group goes on.
	carol2 := p.Link(t, carol, "carol-laptop")
	clienttest.Drain(t, carol)
	if _, err := alice.Send(ctx, "carol", "after the failover"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"carol": carol, "carol2": carol2} {
		if got := messages(clienttest.Drain(t, c)); !slices.Contains(got, "after the failover") {
			t.Fatalf("%s got %q after the failover", name, got)
		}
	}
	if _, err := alice.SendGroup(ctx, "trip", "hello again trip"); err != nil {
		t.Fatal(err)
	}
	if got := groupEvents(t, bob, "trip"); !slices.Equal(got, []string{"alice: hello again trip"}) {
		t.Fatalf("bob saw %q of the group after the failover", got)
	}

	// Nothing of it on the local disk: no embedded kv, inbox, blob or NATS store.
	for _, name := range []string{kvembedded.FileName, msgembedded.DirName, blobembedded.DirName, "nats"} {
		if _, err := os.Stat(filepath.Join(p.DataDir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the data dir holds %s (%v) although that store is on a cluster", name, err)
		}
	}
	t.Logf("walkthrough on the cluster backends took %v", time.Since(began))
}
