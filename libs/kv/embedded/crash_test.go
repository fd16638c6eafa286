package embedded_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/embedded"
)

// The crash test re-executes the test binary as a child that writes until it is killed.
const crashPathEnv = "GUARDYN_KV_CRASH_PATH"

// powerlossChild runs a child of the power-loss tests (powerloss_test.go) if the
// environment asks for one and reports whether it did; nil where they do not build.
var powerlossChild func() bool

func TestMain(m *testing.M) {
	if powerlossChild != nil && powerlossChild() {
		os.Exit(0)
	}
	if path := os.Getenv(crashPathEnv); path != "" {
		crashChild(path)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild runs Updates from 16 goroutines forever and prints "ack <key>" once an
// Update returned nil; each line is one write to the pipe.
func crashChild(path string) {
	s, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("crash/%d/%d/%d", time.Now().UnixNano(), w, i)
				if err := s.Update(context.Background(), func(tx kv.Tx) error {
					return tx.Put([]byte(key), []byte("value of "+key))
				}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				os.Stdout.WriteString("ack " + key + "\n")
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestKill9 kills a writing child twice over the same file and checks that every
// Update that returned nil survived.
func TestKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), embedded.FileName)
	var acked []string
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashPathEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		lines := bufio.NewScanner(out)
		acks, killed := 0, false
		for lines.Scan() {
			key, ok := strings.CutPrefix(lines.Text(), "ack ")
			if !ok {
				t.Fatalf("child printed %q", lines.Text())
			}
			acked = append(acked, key)
			if acks++; acks == 300 {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		timer.Stop()
		cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child ended after %d acks", round, acks)
		}
		s, err := embedded.Open(path, embedded.Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		if err := s.View(context.Background(), func(tx kv.Tx) error {
			for _, key := range acked {
				v, err := tx.Get([]byte(key))
				if err != nil {
					return fmt.Errorf("acknowledged key %s: %w", key, err)
				}
				if string(v) != "value of "+key {
					return fmt.Errorf("acknowledged key %s holds %q", key, v)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
