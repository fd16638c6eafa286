package bus

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/guardyn/guardyn/libs/bus/natstest"
)

var heavyCluster = flag.Bool("nats-cluster-heavy", false, "run the NATS cluster failover test with a long burst")

// TestMain lets the cluster tests start their nats-server processes (natstest).
func TestMain(m *testing.M) {
	natstest.ServeIfChild()
	os.Exit(m.Run())
}

// dialCluster dials until the cluster has elected its JetStream leader.
func dialCluster(t *testing.T, o ClusterOptions) *Bus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := Dial(ctx, o)
		cancel()
		if err == nil {
			t.Cleanup(func() { b.Close() })
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster never ready: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterKeepsAckedEventsWhenAServerDies runs the auth event stream with three replicas
// on three nats-server processes, kills the stream's leader during a publish burst, and
// checks that the burst continues on the other two and that a durable consumer receives
// every event whose publish was acknowledged.
func TestClusterKeepsAckedEventsWhenAServerDies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nats-server processes")
	}
	before, after := 150, 150
	if *heavyCluster {
		before, after = 5000, 5000
	}
	start := time.Now()
	cl := natstest.Start(t, "guardyn", "s3cret")
	b := dialCluster(t, ClusterOptions{
		URLs: strings.Join(cl.URLs, ","), User: "guardyn", Password: "s3cret", Replicas: 3,
	})
	t.Logf("cluster ready in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := b.EnsureAuthEvents(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := b.JetStream().Stream(ctx, StreamAuthEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream %s: want 3 replicas, got config %d, cluster %+v", StreamAuthEvents, info.Config.Replicas, info.Cluster)
	}
	leader := info.Cluster.Leader
	// Every other stream and bucket Guardyn creates gets the same replicas.
	if err := b.EnsureNotify(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PresenceBucket(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.KeyValue(ctx, "cluster_test", time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{StreamNotify, "KV_" + BucketPresence, "KV_cluster_test"} {
		s, err := b.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		si, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if si.Config.Replicas != 3 {
			t.Errorf("%s: %d replicas, want 3", name, si.Config.Replicas)
		}
	}

	var (
		mu       sync.Mutex
		received = map[int]bool{}
	)
	cons, err := Consume(ctx, b, ConsumerConfig{Stream: StreamAuthEvents, Durable: "cluster-test", AckWait: 2 * time.Second},
		atoi, func(_ context.Context, n int) bool {
			mu.Lock()
			received[n] = true
			mu.Unlock()
			return true
		})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Stop()

	// Publishers retry a publish that failed (its outcome is unknown; a duplicate is
	// harmless) and count only acknowledged ones.
	var (
		acked    sync.Map
		nAcked   atomic.Int64
		failures atomic.Int64
		next     atomic.Int64
	)
	publish := func(total int) {
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n := next.Add(1)
					if n > int64(total) {
						return
					}
					for {
						pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
						err := b.Publish(pctx, SubjectDeviceRemoved, []byte(strconv.FormatInt(n, 10)))
						cancel()
						if err == nil {
							acked.Store(int(n), true)
							nAcked.Add(1)
							break
						}
						if ctx.Err() != nil {
							return
						}
						failures.Add(1)
						time.Sleep(50 * time.Millisecond)
					}
				}
			}()
		}
		wg.Wait()
	}
	publish(before)
	burst := time.Now()
	cl.Kill(t, leader)
	killedAt := nAcked.Load()
	next.Store(int64(before)) // each publisher claimed one number past the first burst
	publish(before + after)
	t.Logf("second burst with %s killed took %v", leader, time.Since(burst))
	if ctx.Err() != nil {
		t.Fatalf("burst did not finish: %d acked, %d failed attempts", nAcked.Load(), failures.Load())
	}
	if got := nAcked.Load() - killedAt; got < int64(after) {
		t.Fatalf("after killing %s only %d publishes acknowledged, want %d", leader, got, after)
	}
	t.Logf("killed leader %s after %d acks; %d acks in all, %d failed attempts retried", leader, killedAt, nAcked.Load(), failures.Load())

	deadline := time.Now().Add(30 * time.Second)
	for {
		var missing []int
		mu.Lock()
		acked.Range(func(k, _ any) bool {
			if !received[k.(int)] {
				missing = append(missing, k.(int))
			}
			return true
		})
		mu.Unlock()
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged events never consumed, e.g. %v", len(missing), missing[:min(len(missing), 10)])
		}
		time.Sleep(100 * time.Millisecond)
	}

	info, err = st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == leader {
		t.Fatalf("no new leader after killing %s: %+v", leader, info.Cluster)
	}
}

func TestDialUnreachableNamesNATS(t *testing.T) {
	port := natstest.FreePorts(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Dial(ctx, ClusterOptions{URLs: fmt.Sprintf("nats://guardyn:s3cret@127.0.0.1:%d", port), Timeout: time.Second})
	if err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "nats cluster") || !strings.Contains(msg, "unreachable") || !strings.Contains(msg, strconv.Itoa(port)) {
		t.Fatalf("error %q: want it to name the NATS cluster and its address", msg)
	}
	if strings.Contains(msg, "s3cret") {
		t.Fatalf("error %q carries the password", msg)
	}
}

func TestDialWithoutJetStreamFails(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Dial(ctx, ClusterOptions{URLs: ns.ClientURL()})
	if err == nil || !strings.Contains(err.Error(), "jetstream unavailable") {
		t.Fatalf("Dial to a server without JetStream: %v, want jetstream unavailable", err)
	}
}

func TestClusterOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    ClusterOptions
		want string
	}{
		{"no url", ClusterOptions{}, "no server URL"},
		{"two auth methods", ClusterOptions{URLs: "nats://a:4222", Token: "t", CredsFile: "c"}, "give one of"},
		{"user without password", ClusterOptions{URLs: "nats://a:4222", User: "u"}, "go together"},
		{"cert without key", ClusterOptions{URLs: "nats://a:4222", CertFile: "c"}, "certificate and key"},
		{"too many replicas", ClusterOptions{URLs: "nats://a:4222", Replicas: 7}, "replicas 7"},
		{"negative replicas", ClusterOptions{URLs: "nats://a:4222", Replicas: -1}, "replicas -1"},
	} {
		err := tc.o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	ok := ClusterOptions{URLs: "nats://a:4222,tls://b:4222", User: "u", Password: "p", CAFile: "ca.pem", Replicas: 3}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

// TestEmbeddedStreamsHaveOneReplica keeps the embedded default a single-server JetStream:
// a stream asking for replicas there could never be created.
func TestEmbeddedStreamsHaveOneReplica(t *testing.T) {
	b := startBus(t, filepath.Join(t.TempDir(), "nats"), EmbeddedOptions{})
	ctx := testCtx(t)
	if err := b.EnsureAuthEvents(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PresenceBucket(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{StreamAuthEvents, "KV_" + BucketPresence} {
		st, err := b.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 1 {
			t.Errorf("%s: %d replicas, want 1", name, info.Config.Replicas)
		}
	}
}
