//go:build linux && amd64

package embedded_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/internal/powerloss"
	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded"
)

// The power-loss tests run a scenario in a child traced by libs/internal/powerloss, then
// rebuild the disk as a power cut at many points of the trace would have left it, with
// every kind of loss of unsynced writes, and open the store on each. Unlike TestKill9,
// whose killed child leaves its writes in the page cache, they fail when a sync the
// store needs is missing; see docs/storage.md for which test guards which sync.
const (
	powerlossEnv      = "GUARDYN_MSGSTORE_POWERLOSS"
	powerlossRootEnv  = "GUARDYN_MSGSTORE_POWERLOSS_ROOT"
	powerlossRoundEnv = "GUARDYN_MSGSTORE_POWERLOSS_ROUND"
	// powerlossAcks is how many Appends a burst child makes per round.
	powerlossAcks = 240
	// powerlossMemTable is small, so that a burst flushes memtables to tables, rotates
	// and recycles log files, compacts and rewrites the manifest.
	powerlossMemTable = 64 << 10
)

func init() { powerlossChild = runPowerlossChild }

// powerlossScenarios are the children: each gets the root of its trace and the round.
var powerlossScenarios = map[string]func(root string, round int) error{
	"burst": burstChild,
	"close": closeChild,
}

func runPowerlossChild() bool {
	name := os.Getenv(powerlossEnv)
	if name == "" {
		return false
	}
	round, _ := strconv.Atoi(os.Getenv(powerlossRoundEnv))
	err := powerloss.Child()
	if err == nil {
		err = powerlossScenarios[name](os.Getenv(powerlossRootEnv), round)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return true
}

// tracePowerloss runs scenario in a traced child on root.
func tracePowerloss(t *testing.T, scenario, root string, round int) *powerloss.Trace {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), powerlossEnv+"="+scenario, powerlossRootEnv+"="+root,
		powerlossRoundEnv+"="+strconv.Itoa(round))
	tr, err := powerloss.Run(cmd, root, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s round %d: %s", scenario, round, tr.Summary())
	return tr
}

// newRNG returns a seeded generator and logs the seed, so a failure can be replayed by
// setting GUARDYN_POWERLOSS_SEED.
func newRNG(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GUARDYN_POWERLOSS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("GUARDYN_POWERLOSS_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// cutPoints returns where to cut a trace: just after up to max directory syncs (a file
// one removed is gone for good, anything not synced before is not), just before up to
// max other syncs (everything they would make durable is still at risk), both picked at
// random, and the end.
func cutPoints(tr *powerloss.Trace, rng *rand.Rand, max int) []int {
	pick := func(ks []int) []int {
		rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
		return ks[:min(max, len(ks))]
	}
	points := pick(tr.Syncs())
	for _, k := range pick(tr.DirSyncs()) {
		points = append(points, k+1)
	}
	points = append(points, tr.Len())
	slices.Sort(points)
	return slices.Compact(points)
}

type crashKey struct {
	in int
	id msgstore.ID
}

// parseCrashLine parses "ack|del <inbox> <id>" and "cursor <inbox> <cursor>"; the
// cursor is returned in k.id's place as raw.
func parseCrashLine(line string) (verb string, k crashKey, raw []byte, err error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return "", k, nil, fmt.Errorf("child printed %q", line)
	}
	in, err1 := strconv.Atoi(f[1])
	raw, err2 := hex.DecodeString(f[2])
	if err1 != nil || err2 != nil || in < 0 || in >= len(crashInboxes) || (f[0] != "cursor" && len(raw) != 16) {
		return "", k, nil, fmt.Errorf("child printed %q", line)
	}
	k.in = in
	copy(k.id[:], raw)
	return f[0], k, raw, nil
}

// readInboxes returns every message of the crash inboxes, checking each body.
func readInboxes(s msgstore.Store) (map[crashKey]bool, error) {
	found := map[crashKey]bool{}
	for in, inbox := range crashInboxes {
		var cursor msgstore.Cursor
		for {
			page, err := s.Read(context.Background(), inbox, cursor, 500, msgstore.MaxReadBytes)
			if err != nil {
				return nil, fmt.Errorf("read: %w", err)
			}
			for _, m := range page {
				if !bytes.Equal(m.Body, crashBody(m.ID)) {
					return nil, fmt.Errorf("message %x has a damaged body", m.ID)
				}
				found[crashKey{in, m.ID}] = true
			}
			if len(page) < 500 {
				break
			}
			cursor = page[len(page)-1].Cursor
		}
	}
	return found, nil
}

// openImage opens the store a power cut left under root.
func openImage(root string) (*embedded.Store, error) {
	return embedded.Open(filepath.Join(root, embedded.DirName), embedded.Options{MemTableSize: powerlossMemTable})
}

// burstChild appends from 8 goroutines, printing "ack" after each Append returned and
// "del" before each Delete of two in three, as crashChild does, and exits without closing the store
// after powerlossAcks Appends. A reader reads the inboxes meanwhile and prints
// "cursor <inbox> <cursor>" for the last message of each page it gets. The store is
// created by the child, inside root.
func burstChild(root string, round int) error {
	s, err := openImage(root)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	say := func(verb string, in int, id msgstore.ID) {
		line := fmt.Sprintf("%s %d %s\n", verb, in, hex.EncodeToString(id[:]))
		mu.Lock()
		os.Stdout.WriteString(line)
		mu.Unlock()
	}
	var acks atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			in := i % len(crashInboxes)
			page, err := s.Read(context.Background(), crashInboxes[in], nil, 1000, msgstore.MaxReadBytes)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
			if len(page) > 0 {
				line := fmt.Sprintf("cursor %d %s\n", in, hex.EncodeToString(page[len(page)-1].Cursor))
				mu.Lock()
				os.Stdout.WriteString(line)
				mu.Unlock()
			}
		}
	})
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := crashID(round, w, i)
				in := (w + i) % len(crashInboxes)
				m := msgstore.Message{Inbox: crashInboxes[in], ID: id, Body: crashBody(id), Timestamp: time.Now()}
				if err := s.Append(context.Background(), []msgstore.Message{m}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				say("ack", in, id)
				if acks.Add(1) >= powerlossAcks {
					os.Exit(0)
				}
				// Deleting two in three lets compaction run.
				if i%3 != 2 {
					say("del", in, id)
					if err := s.Delete(context.Background(), m.Inbox, []msgstore.ID{id}); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(3)
					}
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// TestPowerLoss runs bursts of appends and deletes in three rounds, each continuing on
// the disk a random power cut of the previous one left, and checks at cut points all
// through every round, with every kind of loss, that the store opens and holds every
// message whose Append returned and whose delete had not begun, and that a message
// appended after the cut comes after every cursor a reader got before it (a sequence
// number is never given out twice). Small memtables make Pebble flush, compact and
// recycle its log files all through the burst.
func TestPowerLoss(t *testing.T) {
	rng := newRNG(t)
	required := map[crashKey]bool{}
	root := filepath.Join(t.TempDir(), "root0")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	checks := 0
	for round := range 3 {
		tr := tracePowerloss(t, "burst", root, round)
		points := cutPoints(tr, rng, 8)
		next := points[len(points)/2+rng.IntN(len(points)/2)]
		nextRoot := filepath.Join(t.TempDir(), fmt.Sprint("root", round+1))
		var nextRequired map[crashKey]bool
		lines, at := tr.LineEvents()
		d := tr.Replay()
		want := maps(required)
		cursors := map[int][]byte{}
		li := 0
		for _, k := range points {
			for ; li < len(lines) && at[li] < k; li++ {
				if li == 0 {
					continue // the handshake
				}
				verb, key, raw, err := parseCrashLine(lines[li])
				if err != nil {
					t.Fatal(err)
				}
				switch verb {
				case "ack":
					want[key] = true
				case "del":
					delete(want, key)
				case "cursor":
					cursors[key.in] = raw
				}
			}
			if err := d.Advance(k); err != nil {
				t.Fatal(err)
			}
			for _, loss := range powerloss.Losses {
				dir := filepath.Join(t.TempDir(), "cut")
				if err := d.Restore(dir, loss, rng); err != nil {
					t.Fatal(err)
				}
				if err := checkBurstImage(dir, want, cursors); err != nil {
					t.Fatalf("round %d, power cut at event %d of %d with %v: %v", round, k, tr.Len(), loss, err)
				}
				checks++
				os.RemoveAll(dir)
			}
			if k == next && round < 2 {
				loss := powerloss.Losses[rng.IntN(len(powerloss.Losses))]
				if err := d.Restore(nextRoot, loss, rng); err != nil {
					t.Fatal(err)
				}
				nextRequired = maps(want)
				t.Logf("round %d continues from a cut at event %d with %v, %d messages required", round+1, k, loss, len(want))
			}
		}
		root, required = nextRoot, nextRequired
	}
	t.Logf("%d power cuts checked", checks)
}

func maps(m map[crashKey]bool) map[crashKey]bool {
	out := make(map[crashKey]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkBurstImage opens the store a cut left under root, checks that it holds want, then
// appends a message to every inbox and checks that it comes after the inbox's cursor.
func checkBurstImage(root string, want map[crashKey]bool, cursors map[int][]byte) error {
	s, err := openImage(root)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer s.Close()
	found, err := readInboxes(s)
	if err != nil {
		return err
	}
	missing := 0
	for k := range want {
		if !found[k] {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d acknowledged messages lost", missing, len(want))
	}
	for in, cursor := range cursors {
		id := crashID(255, in, 0)
		m := msgstore.Message{Inbox: crashInboxes[in], ID: id, Body: crashBody(id), Timestamp: time.Now()}
		if err := s.Append(context.Background(), []msgstore.Message{m}); err != nil {
			return err
		}
		got, err := s.Read(context.Background(), crashInboxes[in], cursor, 1000, msgstore.MaxReadBytes)
		if err != nil || !slices.ContainsFunc(got, func(g msgstore.Message) bool { return g.ID == id }) {
			return fmt.Errorf("a message appended after the cut is not after cursor %x handed out before it (read %d, %v)", cursor, len(got), err)
		}
	}
	return nil
}

// closeChild deletes an inbox, then acknowledges a message and closes the store: the
// DeleteInbox is durable when it returns, the ack once Close has returned.
func closeChild(root string, _ int) error {
	s, err := openImage(root)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var msgs []msgstore.Message
	for i, in := range []int{0, 0, 1} {
		id := crashID(0, 0, i)
		msgs = append(msgs, msgstore.Message{Inbox: crashInboxes[in], ID: id, Body: crashBody(id), Timestamp: time.Now()})
	}
	if err := s.Append(ctx, msgs); err != nil {
		return err
	}
	if err := s.DeleteInbox(ctx, crashInboxes[1]); err != nil {
		return err
	}
	fmt.Println("inbox deleted")
	if err := s.Delete(ctx, crashInboxes[0], []msgstore.ID{msgs[0].ID}); err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	fmt.Println("closed")
	return nil
}

// TestPowerLossAfterClose checks that a deleted inbox stays deleted after a power cut
// once DeleteInbox returned, and that an acknowledgement stays once Close returned, so a
// clean shutdown redelivers nothing. It fails without the sync in Close.
func TestPowerLossAfterClose(t *testing.T) {
	rng := newRNG(t)
	root := t.TempDir()
	tr := tracePowerloss(t, "close", root, 0)
	lines, at := tr.LineEvents()
	if len(lines) != 3 {
		t.Fatalf("child printed %q", lines)
	}
	kept, acked, gone := crashKey{0, crashID(0, 0, 1)}, crashKey{0, crashID(0, 0, 0)}, crashKey{1, crashID(0, 0, 2)}
	d := tr.Replay()
	for _, k := range cutPoints(tr, rng, 1000) {
		if k <= at[1] {
			continue
		}
		if err := d.Advance(k); err != nil {
			t.Fatal(err)
		}
		for _, loss := range powerloss.Losses {
			dir := filepath.Join(t.TempDir(), "cut")
			if err := d.Restore(dir, loss, rng); err != nil {
				t.Fatal(err)
			}
			s, err := openImage(dir)
			if err != nil {
				t.Fatalf("power cut at event %d with %v: open: %v", k, loss, err)
			}
			found, err := readInboxes(s)
			s.Close()
			switch {
			case err != nil:
				t.Fatalf("power cut at event %d with %v: %v", k, loss, err)
			case !found[kept]:
				t.Fatalf("power cut at event %d with %v: an undeleted message is lost", k, loss)
			case found[gone]:
				t.Fatalf("power cut at event %d with %v: a message of the deleted inbox came back", k, loss)
			case k > at[2] && found[acked]:
				t.Fatalf("power cut after Close returned, with %v: an acknowledged message came back", loss)
			}
		}
	}
}
