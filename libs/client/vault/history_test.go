package vault

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func appendRecords(t *testing.T, v *Vault, records ...string) {
	t.Helper()
	var rs [][]byte
	for _, r := range records {
		rs = append(rs, []byte(r))
	}
	if err := v.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) { return cur, rs, nil }); err != nil {
		t.Fatal(err)
	}
}

func historyStrings(t *testing.T, v *Vault) []string {
	t.Helper()
	rs, err := v.History()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, string(r))
	}
	return out
}

func TestHistoryAppendAndRead(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got := historyStrings(t, v); len(got) != 0 {
		t.Fatalf("new profile history = %q", got)
	}
	appendRecords(t, v, "one", "two")
	if err := v.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) {
		return []byte("state 2"), [][]byte{[]byte("three")}, nil
	}); err != nil {
		t.Fatal(err)
	}
	w, err := Open(Dir(dir), pass)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := historyStrings(t, w); fmt.Sprint(got) != "[one two three]" {
		t.Fatalf("history = %q", got)
	}
	if st, _ := w.Read(); string(st) != "state 2" {
		t.Fatalf("state = %q", st)
	}
	raw, err := os.ReadFile(filepath.Join(dir, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("three")) {
		t.Fatal("history record readable in the file")
	}
	boom := errors.New("boom")
	if err := v.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) { return cur, [][]byte{[]byte("lost")}, boom }); !errors.Is(err, boom) {
		t.Fatalf("failed cycle: err = %v", err)
	}
	if got := historyStrings(t, v); len(got) != 3 {
		t.Fatalf("a failed cycle appended: %q", got)
	}
}

// TestHistoryTornTail simulates a crash in the middle of an append: the torn record is
// ignored by readers and cut off by the next append, which stays readable.
func TestHistoryTornTail(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	appendRecords(t, v, "kept")
	path := filepath.Join(dir, HistoryFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{1, 3, 4, 10, 30} {
		torn := append(bytes.Clone(good), good[:min(cut, len(good))]...)
		if err := os.WriteFile(path, torn, 0o600); err != nil {
			t.Fatal(err)
		}
		if got := historyStrings(t, v); fmt.Sprint(got) != "[kept]" {
			t.Fatalf("cut %d: history = %q", cut, got)
		}
	}
	appendRecords(t, v, "after the crash")
	if got := historyStrings(t, v); fmt.Sprint(got) != "[kept after the crash]" {
		t.Fatalf("history after append = %q", got)
	}
}

func TestHistoryTamperedOrForeign(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	appendRecords(t, v, "a record")
	path := filepath.Join(dir, HistoryFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := v.History(); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("tampered history: err = %v", err)
	}
	// Another profile's history, even with the same passphrase, has another salt.
	other, err := Create(Dir(t.TempDir()), pass, testParams, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := os.WriteFile(filepath.Join(string(other.store.(Dir)), HistoryFile), good, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := other.History(); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("foreign history: err = %v", err)
	}
	if err := v.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) {
		return cur, [][]byte{make([]byte, MaxRecordSize+1)}, nil
	}); err == nil {
		t.Fatal("oversized record accepted")
	}
}

func TestHistoryCompaction(t *testing.T) {
	defer func(n int) { maxHistorySize = n }(maxHistorySize)
	maxHistorySize = 4 << 10
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for i := range 200 {
		appendRecords(t, v, fmt.Sprintf("record %03d", i))
	}
	got := historyStrings(t, v)
	if len(got) >= 200 || len(got) < 10 || got[len(got)-1] != "record 199" {
		t.Fatalf("after compaction: %d records ending %q", len(got), got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("records out of order: %q then %q", got[i-1], got[i])
		}
	}
	st, err := os.Stat(filepath.Join(dir, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > int64(maxHistorySize)+recordOverhead+64 {
		t.Fatalf("history file is %d bytes, limit %d", st.Size(), maxHistorySize)
	}
	if err := v.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, HistoryFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("history survives Destroy: %v", err)
	}
}

// FuzzHistory parses arbitrary bytes as a history file: never a panic, the well-formed
// prefix never runs past the input, and only genuine records decrypt (records are sealed one
// by one, so dropping or reordering them is possible; forging one is not).
func FuzzHistory(f *testing.F) {
	dir := f.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("state"))
	if err != nil {
		f.Fatal(err)
	}
	if err := v.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) {
		return cur, [][]byte{[]byte("seed one"), []byte("seed two")}, nil
	}); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, HistoryFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{0, 0, 0, 16})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		records, end := ParseRecords(data)
		if end > len(data) {
			t.Fatalf("end %d past input of %d bytes", end, len(data))
		}
		n := 0
		for _, r := range records {
			n += 4 + len(r)
		}
		if n != end {
			t.Fatalf("records cover %d bytes, end is %d", n, end)
		}
		// The framed records of a file, and the whole input as one record, as a Storage
		// without framing may return it.
		for _, sealed := range [][][]byte{records, {data}} {
			out, err := v.openRecords(sealed)
			if err != nil {
				continue
			}
			for _, r := range out {
				if string(r) != "seed one" && string(r) != "seed two" {
					t.Fatalf("forged history record decrypted: %q", r)
				}
			}
		}
	})
}
