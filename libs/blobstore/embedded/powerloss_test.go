//go:build linux && amd64

package embedded_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/blobstore"
	"github.com/guardyn/guardyn/libs/blobstore/embedded"
	"github.com/guardyn/guardyn/libs/internal/powerloss"
)

// The power-loss test runs uploads in a child traced by libs/internal/powerloss, then
// rebuilds the disk as a power cut at many points of the trace would have left it (unsynced
// writes dropped, kept, torn or reordered; unsynced directory entries dropped) and opens the
// store on each: every size a Sync acknowledged must still be committed, with the bytes
// that were appended, and the upload must continue from its committed size. Commit (a hard
// link, which the tracer does not model) is not exercised.
const (
	powerlossEnv  = "GUARDYN_BLOBSTORE_POWERLOSS_ROOT"
	plChunks      = 12
	plChunkSize   = 8 << 10
	plSyncEvery   = 3
	plUploadCount = 2
)

func TestMain(m *testing.M) {
	if root := os.Getenv(powerlossEnv); root != "" {
		if err := powerlossChild(root); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// chunk is the content of chunk i of upload u.
func chunk(u, i int) []byte {
	b := make([]byte, plChunkSize)
	for j := range b {
		b[j] = byte(u*31 + i*7 + j)
	}
	return b
}

func uploadID(u int) string { return "u" + strconv.Itoa(u) }

// powerlossChild creates the uploads, appends chunks to them in turn and prints
// "ack <upload> <size>" after every Sync.
func powerlossChild(root string) error {
	if err := powerloss.Child(); err != nil {
		return err
	}
	ctx := context.Background()
	s, err := embedded.Open(root)
	if err != nil {
		return err
	}
	for u := range plUploadCount {
		if err := s.CreateUpload(ctx, uploadID(u)); err != nil {
			return err
		}
		fmt.Printf("ack %d 0\n", u)
	}
	for i := range plChunks {
		for u := range plUploadCount {
			if _, err := s.Append(ctx, uploadID(u), int64(i*plChunkSize), chunk(u, i)); err != nil {
				return err
			}
			if (i+1)%plSyncEvery == 0 {
				n, err := s.Sync(ctx, uploadID(u))
				if err != nil {
					return err
				}
				fmt.Printf("ack %d %d\n", u, n)
			}
		}
	}
	return nil
}

func TestPowerLoss(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), powerlossEnv+"="+root)
	tr, err := powerloss.Run(cmd, root, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", tr.Summary())
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GUARDYN_POWERLOSS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("GUARDYN_POWERLOSS_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	// Cut just before every sync and just after every directory sync, and at the end.
	points := tr.Syncs()
	for _, k := range tr.DirSyncs() {
		points = append(points, k+1)
	}
	points = append(points, tr.Len())
	slices.Sort(points)
	points = slices.Compact(points)
	lines, at := tr.LineEvents()

	d := tr.Replay()
	checks := 0
	for _, k := range points {
		// What the child had acknowledged before the cut.
		acked := map[int]int64{}
		for i, line := range lines {
			if at[i] >= k {
				break
			}
			if strings.HasPrefix(line, "powerloss:") {
				continue // the tracer's handshake
			}
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "ack" {
				t.Fatalf("child printed %q", line)
			}
			u, _ := strconv.Atoi(f[1])
			n, _ := strconv.ParseInt(f[2], 10, 64)
			acked[u] = n
		}
		if err := d.Advance(k); err != nil {
			t.Fatal(err)
		}
		for _, loss := range powerloss.Losses {
			dir := filepath.Join(t.TempDir(), "cut")
			if err := d.Restore(dir, loss, rng); err != nil {
				t.Fatal(err)
			}
			if err := checkImage(dir, acked); err != nil {
				t.Fatalf("power cut at event %d of %d with %v: %v", k, tr.Len(), loss, err)
			}
			checks++
			os.RemoveAll(dir)
		}
	}
	t.Logf("%d power cuts checked", checks)
}

// checkImage opens the store on a rebuilt disk: each acknowledged upload has at least its
// acknowledged size, holds exactly the bytes appended up to its committed size, and takes
// the next chunk there.
func checkImage(dir string, acked map[int]int64) error {
	ctx := context.Background()
	s, err := embedded.Open(dir)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer s.Close()
	for u := range plUploadCount {
		want, ok := acked[u]
		n, err := s.UploadSize(ctx, uploadID(u))
		if errors.Is(err, blobstore.ErrNotFound) && !ok {
			continue
		}
		if err != nil {
			return fmt.Errorf("upload %d: %w", u, err)
		}
		if n < want || n%plChunkSize != 0 || n > plChunks*plChunkSize {
			return fmt.Errorf("upload %d: committed size %d, %d acknowledged", u, n, want)
		}
		// The bytes: the next chunk appends, and the whole commits under the hash of what
		// the child appended.
		next := int(n / plChunkSize)
		h := sha256.New()
		for i := range next {
			h.Write(chunk(u, i))
		}
		if next < plChunks {
			if _, err := s.Append(ctx, uploadID(u), n, chunk(u, next)); err != nil {
				return fmt.Errorf("upload %d: append at the committed size: %w", u, err)
			}
			h.Write(chunk(u, next))
		}
		var sum blobstore.Digest
		h.Sum(sum[:0])
		if _, err := s.Commit(ctx, uploadID(u), sum); err != nil {
			return fmt.Errorf("upload %d at %d bytes: %w", u, n, err)
		}
	}
	return nil
}
