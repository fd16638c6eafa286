//go:build linux && amd64

package embedded_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
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
	"github.com/guardyn/guardyn/libs/msgstore/embedded/internal/record"
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
	// powerlossSegment is small, so that a burst rolls, creates spares and compacts.
	powerlossSegment = 32 << 10
)

func init() { powerlossChild = runPowerlossChild }

// powerlossScenarios are the children: each gets the root of its trace and the round.
var powerlossScenarios = map[string]func(root string, round int) error{
	"burst":    burstChild,
	"close":    closeChild,
	"cut":      cutChild,
	"reopen":   reopenChild,
	"roll":     rollChild,
	"sequence": sequenceChild,
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

// cutPoints returns where to cut a trace: just after every directory sync (a file it
// removed is gone for good, anything not synced before is not), just before up to max
// other syncs picked at random (everything they would make durable is still at risk),
// and the end.
func cutPoints(tr *powerloss.Trace, rng *rand.Rand, max int) []int {
	syncs := tr.Syncs()
	rng.Shuffle(len(syncs), func(i, j int) { syncs[i], syncs[j] = syncs[j], syncs[i] })
	points := syncs[:min(max, len(syncs))]
	for _, k := range tr.DirSyncs() {
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

func parseCrashLine(line string) (verb string, k crashKey, err error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return "", k, fmt.Errorf("child printed %q", line)
	}
	in, err1 := strconv.Atoi(f[1])
	raw, err2 := hex.DecodeString(f[2])
	if err1 != nil || err2 != nil || len(raw) != 16 || in < 0 || in >= len(crashInboxes) {
		return "", k, fmt.Errorf("child printed %q", line)
	}
	k.in = in
	copy(k.id[:], raw)
	return f[0], k, nil
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
	return embedded.Open(filepath.Join(root, embedded.DirName), embedded.Options{SegmentSize: powerlossSegment})
}

// burstChild appends from 8 goroutines, printing "ack" after each Append returned and
// "del" before each Delete of two in three, as crashChild does, and exits without closing the store
// after powerlossAcks Appends. The store is created by the child, inside root.
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
// message whose Append returned and whose delete had not begun. It fails when any sync
// of the commit, segment roll, spare creation or compaction paths is missing.
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
		points := cutPoints(tr, rng, 25)
		next := points[len(points)/2+rng.IntN(len(points)/2)]
		nextRoot := filepath.Join(t.TempDir(), fmt.Sprint("root", round+1))
		var nextRequired map[crashKey]bool
		lines, at := tr.LineEvents()
		d := tr.Replay()
		want := maps(required)
		li := 0
		for _, k := range points {
			for ; li < len(lines) && at[li] < k; li++ {
				if li == 0 {
					continue // the handshake
				}
				verb, key, err := parseCrashLine(lines[li])
				if err != nil {
					t.Fatal(err)
				}
				switch verb {
				case "ack":
					want[key] = true
				case "del":
					delete(want, key)
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
				if err := checkBurstImage(dir, want); err != nil {
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

func checkBurstImage(root string, want map[crashKey]bool) error {
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

// cutChild opens a store whose only segment ends in garbage with a smaller segment size,
// so the first Append moves to a new segment at once and the cut segment is no longer
// the last: its cut must be durable by then.
func cutChild(root string, _ int) error {
	s, err := embedded.Open(filepath.Join(root, embedded.DirName), embedded.Options{SegmentSize: 4 << 10})
	if err != nil {
		return err
	}
	id := crashID(1, 0, 0)
	m := msgstore.Message{Inbox: crashInboxes[0], ID: id, Body: crashBody(id), Timestamp: time.Now()}
	if err := s.Append(context.Background(), []msgstore.Message{m}); err != nil {
		return err
	}
	fmt.Println("appended")
	return nil
}

// TestPowerLossAfterCut writes 40 messages and garbage after them, as a crash in the
// middle of a commit leaves a segment, lets a traced child open the store (cutting the
// garbage) and append, and checks every power cut of that: the store must open and hold
// all 40. It fails without the sync of the cut.
func TestPowerLossAfterCut(t *testing.T) {
	rng := newRNG(t)
	root := t.TempDir()
	dir := filepath.Join(root, embedded.DirName)
	s, err := embedded.Open(dir, embedded.Options{SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []msgstore.Message
	for i := range 40 {
		id := crashID(0, 0, i)
		msgs = append(msgs, msgstore.Message{Inbox: crashInboxes[0], ID: id, Body: crashBody(id)[:100], Timestamp: time.Now()})
	}
	if err := s.Append(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := segmentFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("%d segments, want 1", len(files))
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	end := len(bytes.TrimRight(data, "\x00"))
	if end < 4<<10 {
		t.Fatalf("records end at %d, want them past the child's segment size", end)
	}
	garbage := []byte{0, 0, 0, 1, 0, 0, 0, 3, 1, 1, 1} // a record with a bad checksum
	if err := os.WriteFile(files[0], append(data[:end:end], garbage...), 0o600); err != nil {
		t.Fatal(err)
	}

	tr := tracePowerloss(t, "cut", root, 0)
	d := tr.Replay()
	for _, k := range cutPoints(tr, rng, 1000) {
		if err := d.Advance(k); err != nil {
			t.Fatal(err)
		}
		for _, loss := range powerloss.Losses {
			img := filepath.Join(t.TempDir(), "cut")
			if err := d.Restore(img, loss, rng); err != nil {
				t.Fatal(err)
			}
			s, err := embedded.Open(filepath.Join(img, embedded.DirName), embedded.Options{SegmentSize: 4 << 10})
			if err != nil {
				t.Fatalf("power cut at event %d with %v: open: %v", k, loss, err)
			}
			got, err := s.Read(context.Background(), crashInboxes[0], nil, 100, msgstore.MaxReadBytes)
			s.Close()
			if err != nil || len(got) < 40 {
				t.Fatalf("power cut at event %d with %v: read %d messages, %v; want at least 40", k, loss, len(got), err)
			}
		}
	}
}

// sequenceChild appends one message larger than a segment, deletes it, and waits until
// compaction has removed its segment, leaving a single segment that holds no message:
// only that segment's header still says which sequence number comes next.
func sequenceChild(root string, _ int) error {
	dir := filepath.Join(root, embedded.DirName)
	s, err := embedded.Open(dir, embedded.Options{SegmentSize: 4 << 10})
	if err != nil {
		return err
	}
	ctx := context.Background()
	id := crashID(0, 0, 0)
	big := msgstore.Message{Inbox: crashInboxes[0], ID: id, Body: bytes.Repeat([]byte{7}, 20<<10), Timestamp: time.Now()}
	if err := s.Append(ctx, []msgstore.Message{big}); err != nil {
		return err
	}
	got, err := s.Read(ctx, crashInboxes[0], nil, 10, msgstore.MaxReadBytes)
	if err != nil || len(got) != 1 {
		return fmt.Errorf("read %d messages, %v", len(got), err)
	}
	fmt.Println("cursor", hex.EncodeToString(got[0].Cursor))
	if err := s.Delete(ctx, crashInboxes[0], []msgstore.ID{id}); err != nil {
		return err
	}
	first := "0000000000000001.log"
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, first)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("segment %s not compacted away within a minute", first)
		}
	}
	// The segment is gone but compaction may not be over. An expired message writes
	// nothing and syncs nothing, but its Append returns only after the committer
	// finished the compaction.
	expired := msgstore.Message{Inbox: crashInboxes[2], ID: crashID(0, 1, 0), Body: []byte("x"),
		Timestamp: time.Now(), Expiry: time.Now().Add(-time.Hour)}
	if err := s.Append(ctx, []msgstore.Message{expired}); err != nil {
		return err
	}
	fmt.Println("compacted", first)
	return nil
}

// reopenChild opens the store and exits: Open replaces a last segment without records
// by a new one that must carry the next sequence number on.
func reopenChild(root string, _ int) error {
	if _, err := embedded.Open(filepath.Join(root, embedded.DirName), embedded.Options{SegmentSize: 4 << 10}); err != nil {
		return err
	}
	fmt.Println("opened")
	return nil
}

// TestPowerLossKeepsSequence checks that after a power cut a cursor handed out before it
// still finds every message appended later, even when compaction removed every segment
// with a message, and that a segment compaction removed stays removed (the disk bound).
// A second round reopens the store a cut at the end of the first left, whose only
// segment holds no record, so Open replaces it by a new one. It fails without the sync
// of a new segment's header at a roll or at its creation, or without the directory sync
// after a compaction.
func TestPowerLossKeepsSequence(t *testing.T) {
	rng := newRNG(t)
	root := t.TempDir()
	tr := tracePowerloss(t, "sequence", root, 0)
	lines, at := tr.LineEvents()
	if len(lines) != 3 {
		t.Fatalf("child printed %q", lines)
	}
	cursor, err := hex.DecodeString(strings.TrimPrefix(lines[1], "cursor "))
	if err != nil {
		t.Fatal(err)
	}
	removed := strings.TrimPrefix(lines[2], "compacted ")
	checkSequence(t, tr, rng, cursor, at[1], at[2], removed)

	d := tr.Replay()
	if err := d.Advance(tr.Len()); err != nil {
		t.Fatal(err)
	}
	root2 := filepath.Join(t.TempDir(), "root")
	if err := d.Restore(root2, powerloss.DropAll, rng); err != nil {
		t.Fatal(err)
	}
	tr2 := tracePowerloss(t, "reopen", root2, 1)
	checkSequence(t, tr2, rng, cursor, 0, tr2.Len(), removed)
}

// checkSequence checks the cuts of tr after event from: the store opens, a message
// appended then comes after cursor, and removed is gone in cuts after event gone.
func checkSequence(t *testing.T, tr *powerloss.Trace, rng *rand.Rand, cursor []byte, from, gone int, removed string) {
	t.Helper()
	d := tr.Replay()
	for _, k := range cutPoints(tr, rng, 1000) {
		if k <= from {
			continue
		}
		if err := d.Advance(k); err != nil {
			t.Fatal(err)
		}
		for _, loss := range powerloss.Losses {
			img := filepath.Join(t.TempDir(), "cut")
			if err := d.Restore(img, loss, rng); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(img, embedded.DirName)
			if _, err := os.Stat(filepath.Join(dir, removed)); k > gone && err == nil {
				t.Fatalf("power cut at event %d with %v: segment %s came back after compaction removed it", k, loss, removed)
			}
			s, err := embedded.Open(dir, embedded.Options{SegmentSize: 4 << 10})
			if err != nil {
				t.Fatalf("power cut at event %d with %v: open: %v", k, loss, err)
			}
			id := crashID(0, 2, 0)
			m := msgstore.Message{Inbox: crashInboxes[0], ID: id, Body: crashBody(id), Timestamp: time.Now()}
			if err := s.Append(context.Background(), []msgstore.Message{m}); err != nil {
				t.Fatal(err)
			}
			got, err := s.Read(context.Background(), crashInboxes[0], cursor, 10, msgstore.MaxReadBytes)
			s.Close()
			if err != nil || !slices.ContainsFunc(got, func(g msgstore.Message) bool { return g.ID == id }) {
				t.Fatalf("power cut at event %d with %v: a message appended after the cut is not after the cursor handed out before it (read %d, %v)",
					k, loss, len(got), err)
			}
		}
	}
}

// rollChild deletes a message of a store whose only segment is a few bytes short of
// the child's segment size, so the delete record is written, unsynced, at its end and
// the next Append moves to a new segment: the old one must be synced by then, or a torn
// delete record is left in a segment that is no longer the last.
func rollChild(root string, _ int) error {
	s, err := embedded.Open(filepath.Join(root, embedded.DirName), embedded.Options{SegmentSize: rollSegment})
	if err != nil {
		return err
	}
	ctx := context.Background()
	seg := filepath.Join(root, embedded.DirName, "0000000000000001.log")
	before, err := os.Stat(seg)
	if err != nil {
		return err
	}
	if err := s.Delete(ctx, crashInboxes[0], []msgstore.ID{crashID(0, 0, 0)}); err != nil {
		return err
	}
	// Delete does not wait for its record to be written; the segment grows when it is.
	// Appending before then would put both records in one synced write.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		fi, err := os.Stat(seg)
		if err != nil {
			return err
		}
		if fi.Size() > before.Size() {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the delete record was not written within a minute")
		}
	}
	id := crashID(1, 0, 0)
	m := msgstore.Message{Inbox: crashInboxes[1], ID: id, Body: crashBody(id), Timestamp: time.Now()}
	if err := s.Append(ctx, []msgstore.Message{m}); err != nil {
		return err
	}
	fmt.Println("appended")
	return nil
}

const rollSegment = 4 << 10

// TestPowerLossAtRoll fills a store's only segment to a few bytes short of the segment
// size, lets a traced child delete a message (the delete record crosses the size) and
// append another (which moves to a new segment), and checks every power cut of that,
// torn ones included: the store must open and keep every undeleted message. It fails
// without the sync of the old segment when moving to a new one.
func TestPowerLossAtRoll(t *testing.T) {
	rng := newRNG(t)
	root := t.TempDir()
	dir := filepath.Join(root, embedded.DirName)
	s, err := embedded.Open(dir, embedded.Options{SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// Fill to size-delLen+1, so the delete record ends past the segment size.
	delLen := len(record.AppendDelete(nil, crashInboxes[0], []uint64{1}))
	size, target := 16, rollSegment-delLen+1
	var msgs []msgstore.Message
	for i := 0; size < target; i++ {
		id := crashID(0, 0, i)
		m := msgstore.Message{Inbox: crashInboxes[0], ID: id, Timestamp: time.Unix(1_750_000_000, 0)}
		overhead := len(record.AppendMessage(nil, 1, &m))
		n := min(200, target-size-overhead)
		if rest := target - size - overhead - n; rest > 0 && rest < overhead+1 {
			n /= 2 // leave room for one more record
		}
		m.Body = crashBody(id)[:n]
		msgs = append(msgs, m)
		size += overhead + n
	}
	if err := s.Append(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if files := segmentFiles(t, dir); len(files) != 1 {
		t.Fatalf("%d segments, want 1", len(files))
	} else if fi, err := os.Stat(files[0]); err != nil || fi.Size() != int64(target) {
		t.Fatalf("segment of %v bytes (%v), want %d", fi.Size(), err, target)
	}

	tr := tracePowerloss(t, "roll", root, 0)
	d := tr.Replay()
	for _, k := range cutPoints(tr, rng, 1000) {
		if err := d.Advance(k); err != nil {
			t.Fatal(err)
		}
		for _, loss := range append(powerloss.Losses, powerloss.Torn, powerloss.Torn, powerloss.Torn) {
			img := filepath.Join(t.TempDir(), "cut")
			if err := d.Restore(img, loss, rng); err != nil {
				t.Fatal(err)
			}
			s, err := embedded.Open(filepath.Join(img, embedded.DirName), embedded.Options{SegmentSize: rollSegment})
			if err != nil {
				t.Fatalf("power cut at event %d with %v: open: %v", k, loss, err)
			}
			got, err := s.Read(context.Background(), crashInboxes[0], nil, 1000, msgstore.MaxReadBytes)
			s.Close()
			if err != nil || len(got) < len(msgs)-1 {
				t.Fatalf("power cut at event %d with %v: read %d messages, %v; want at least %d", k, loss, len(got), err, len(msgs)-1)
			}
		}
	}
}
