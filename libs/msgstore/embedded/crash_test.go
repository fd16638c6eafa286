package embedded_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded"
)

// The crash test re-executes the test binary as a child that appends until it is killed.
const (
	crashDirEnv   = "GUARDYN_MSGSTORE_CRASH_DIR"
	crashRoundEnv = "GUARDYN_MSGSTORE_CRASH_ROUND"
)

var crashInboxes = []msgstore.Inbox{
	{UserID: "u1", DeviceID: "d1"}, {UserID: "u1", DeviceID: "d2"}, {UserID: "u2", DeviceID: "d1"},
}

// powerlossChild runs a child of the power-loss tests (powerloss_test.go) if the
// environment asks for one and reports whether it did; nil where they do not build.
var powerlossChild func() bool

func TestMain(m *testing.M) {
	if powerlossChild != nil && powerlossChild() {
		os.Exit(0)
	}
	if dir := os.Getenv(crashDirEnv); dir != "" {
		round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
		crashChild(dir, round)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashBody derives a body of varying length from the id, so the parent can check
// every byte without being told the body.
func crashBody(id msgstore.ID) []byte {
	sum := sha256.Sum256(id[:])
	n := 100 + int(binary.BigEndian.Uint16(sum[:]))%3000
	return bytes.Repeat(sum[:], n/32+1)[:n]
}

func crashID(round, worker, i int) msgstore.ID {
	var id msgstore.ID
	id[0], id[1] = byte(round), byte(worker)
	binary.BigEndian.PutUint64(id[8:], uint64(i))
	return id
}

// crashChild appends from 16 goroutines forever, printing "ack <inbox> <id>" once an
// Append returned nil and "del <inbox> <id>" just before calling Delete, so the parent
// treats a message as maybe deleted from the moment its delete may have begun. Each line
// is one write to the pipe, so it arrives whole or not at all.
func crashChild(dir string, round int) {
	s, err := embedded.Open(dir, embedded.Options{SegmentSize: 256 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(verb string, in int, id msgstore.ID) {
		line := fmt.Sprintf("%s %d %s\n", verb, in, hex.EncodeToString(id[:]))
		mu.Lock()
		os.Stdout.WriteString(line)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range 16 {
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
				if i%3 == 0 {
					// Announced before the call: a kill after Delete but before the
					// line would otherwise leave the parent expecting a message whose
					// delete another Append's sync may have made durable.
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
}

// TestKill9 kills a child mid-burst several times over the same directory and checks
// after each kill that every message whose Append returned nil is there, intact.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	type key struct {
		in int
		id msgstore.ID
	}
	acked := map[key]bool{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		acks := 0
		killAt := 1500 + 700*round
		killed := false
		timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			if len(f) != 3 {
				t.Fatalf("child printed %q", lines.Text())
			}
			in, err1 := strconv.Atoi(f[1])
			raw, err2 := hex.DecodeString(f[2])
			if err1 != nil || err2 != nil || len(raw) != 16 || in < 0 || in >= len(crashInboxes) {
				t.Fatalf("child printed %q", lines.Text())
			}
			k := key{in: in}
			copy(k.id[:], raw)
			switch f[0] {
			case "ack":
				acked[k] = true
				acks++
			case "del":
				// Announced before Delete is called: from here on the delete may or
				// may not survive, so the message may or may not come back.
				delete(acked, k)
			}
			if acks >= killAt && !killed {
				// SIGKILL: no deferred code, no flush, exactly like a crash.
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		timer.Stop()
		cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child ended after %d acks: %s", round, acks, stderr.String())
		}

		torn := 0
		s, err := embedded.Open(dir, embedded.Options{OnError: func(error) { torn++ }})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		found := map[key]bool{}
		for in, inbox := range crashInboxes {
			var cursor msgstore.Cursor
			for {
				page, err := s.Read(context.Background(), inbox, cursor, 500, msgstore.MaxReadBytes)
				if err != nil {
					t.Fatalf("round %d: read: %v", round, err)
				}
				for _, m := range page {
					if !bytes.Equal(m.Body, crashBody(m.ID)) {
						t.Fatalf("round %d: message %x has a damaged body", round, m.ID)
					}
					found[key{in, m.ID}] = true
				}
				if len(page) < 500 {
					break
				}
				cursor = page[len(page)-1].Cursor
			}
		}
		missing := 0
		for k := range acked {
			if !found[k] {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged messages lost after kill -9", round, missing, len(acked))
		}
		t.Logf("round %d: %d acks read, all %d acknowledged and undeleted messages present, %d torn tails cut",
			round, acks, len(acked), torn)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestZeroedSegmentHeader checks what Open makes of a segment whose header is zeros, as
// a power cut leaves a segment whose creation was cut short after another directory
// sync had made its name durable (found by TestPowerLoss): after the last segment with
// records it never held one and is removed; before it, it is damage.
func TestZeroedSegmentHeader(t *testing.T) {
	ctx := context.Background()
	in := crashInboxes[0]
	m := msgstore.Message{Inbox: in, ID: crashID(0, 0, 0), Body: []byte("kept"), Timestamp: time.Now()}
	for _, last := range []bool{true, false} {
		dir := t.TempDir()
		s, err := embedded.Open(dir, embedded.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, []msgstore.Message{m}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		zeroed := filepath.Join(dir, "0000000000000002.log")
		if !last {
			// Move the segment with the message after the zeroed one.
			if err := os.Rename(filepath.Join(dir, "0000000000000001.log"), filepath.Join(dir, "0000000000000003.log")); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(zeroed, make([]byte, 32<<10), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err = embedded.Open(dir, embedded.Options{})
		if !last {
			if !errors.Is(err, msgstore.ErrCorrupt) {
				t.Fatalf("zeroed header before a segment with records: open = %v, want msgstore.ErrCorrupt", err)
			}
			if err == nil {
				s.Close()
			}
			continue
		}
		if err != nil {
			t.Fatalf("zeroed header after the last segment with records: %v", err)
		}
		got, err := s.Read(ctx, in, nil, 10, msgstore.MaxReadBytes)
		if err != nil || len(got) != 1 || string(got[0].Body) != "kept" {
			t.Fatalf("read %d messages, %v; want the one appended", len(got), err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(zeroed); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("zeroed segment left in place: %v", err)
		}
	}
}
