package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testParams keeps scrypt cheap in tests; the format records them, so reading is unchanged.
var testParams = Params{LogN: MinLogN, R: 8, P: 1}

var pass = []byte("correct horse battery staple")

func TestCreateOpenRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "profile")
	v, err := Create(Dir(dir), pass, testParams, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if !Exists(Dir(dir)) {
		t.Fatal("Exists = false after Create")
	}
	if err := v.Update(func(cur []byte) ([]byte, error) {
		if string(cur) != "hello" {
			t.Errorf("current = %q, want hello", cur)
		}
		return []byte("world"), nil
	}); err != nil {
		t.Fatal(err)
	}
	w, err := Open(Dir(dir), pass)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got, err := w.Read()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "world" {
		t.Fatalf("Read = %q, want world", got)
	}
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("world")) {
		t.Fatal("plaintext visible in the state file")
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("profile directory mode = %v, want 0700", st.Mode().Perm())
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if _, err := Create(Dir(dir), pass, testParams, []byte("b")); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: err = %v, want ErrExists", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Dir(dir), pass); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open empty dir: err = %v, want ErrNotFound", err)
	}
	if _, err := Open(Dir(filepath.Join(dir, "missing")), pass); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open missing dir: err = %v, want ErrNotFound", err)
	}
	v, err := Create(Dir(dir), pass, testParams, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if _, err := Open(Dir(dir), []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: err = %v, want ErrWrongPassphrase", err)
	}
	if _, err := Open(Dir(dir), nil); err == nil {
		t.Fatal("empty passphrase accepted")
	}
}

func TestTamperedFileRejected(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("some state worth protecting"))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	path := filepath.Join(dir, StateFile)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range orig {
		bad := bytes.Clone(orig)
		bad[i] ^= 0x01
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Dir(dir), pass); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := Header{Params: testParams}.AppendBinary(nil)
	good = append(good, make([]byte, 16)...)
	if _, _, err := ParseHeader(good); err != nil {
		t.Fatalf("well-formed header: %v", err)
	}
	cases := map[string]struct {
		data []byte
		want error
	}{
		"empty":          {nil, ErrMalformed},
		"bad magic":      {append([]byte("XDYNSTATE"), good[9:]...), ErrMalformed},
		"short":          {good[:headerSize-1], ErrMalformed},
		"no tag":         {good[:headerSize+15], ErrMalformed},
		"version 2":      {withByte(good, len(magic), 2), ErrUnsupportedVersion},
		"logN too small": {withByte(good, len(magic)+1, MinLogN-1), ErrBadParams},
		"logN too large": {withByte(good, len(magic)+1, MaxLogN+1), ErrBadParams},
		"r zero":         {withByte(good, len(magic)+2, 0), ErrBadParams},
		"r too large":    {withByte(good, len(magic)+2, maxR+1), ErrBadParams},
		"p zero":         {withByte(good, len(magic)+3, 0), ErrBadParams},
		"p too large":    {withByte(good, len(magic)+3, maxP+1), ErrBadParams},
		"too large":      {make([]byte, MaxFileSize+1), ErrMalformed},
	}
	for name, c := range cases {
		if _, _, err := ParseHeader(c.data); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
	if _, err := Create(Dir(t.TempDir()), pass, Params{LogN: 30, R: 8, P: 1}, nil); !errors.Is(err, ErrBadParams) {
		t.Errorf("Create with log2(N)=30: err = %v, want ErrBadParams", err)
	}
}

func withByte(b []byte, i int, v byte) []byte {
	out := bytes.Clone(b)
	out[i] = v
	return out
}

// TestConcurrentUpdatesSerialize runs load-modify-save cycles from several independently
// opened Vaults at once, as separate CLI processes would: the file lock must serialize them,
// so no increment is lost.
func TestConcurrentUpdatesSerialize(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, binary.BigEndian.AppendUint64(nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	const workers, rounds = 4, 25
	var wg sync.WaitGroup
	for range workers {
		w, err := Open(Dir(dir), pass)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			for range rounds {
				if err := w.Update(func(cur []byte) ([]byte, error) {
					n := binary.BigEndian.Uint64(cur)
					return binary.BigEndian.AppendUint64(nil, n+1), nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	r, err := Open(Dir(dir), pass)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.BigEndian.Uint64(got); n != workers*rounds {
		t.Fatalf("counter = %d, want %d: an update was lost", n, workers*rounds)
	}
}

func TestFailedUpdateWritesNothing(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	boom := errors.New("boom")
	if err := v.Update(func([]byte) ([]byte, error) { return []byte("after"), boom }); !errors.Is(err, boom) {
		t.Fatalf("Update: err = %v, want boom", err)
	}
	got, err := v.Read()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "before" {
		t.Fatalf("state = %q after a failed update, want before", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != StateFile && e.Name() != lockFile {
			t.Errorf("stray file %s left behind", e.Name())
		}
	}
}

func TestDestroy(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Destroy(); err != nil {
		t.Fatal(err)
	}
	if Exists(Dir(dir)) {
		t.Fatal("state file still present after Destroy")
	}
	if _, err := v.Read(); err == nil {
		t.Fatal("Read after Destroy succeeded")
	}
}

// FuzzOpen feeds arbitrary bytes as a state file: they must be rejected with an error,
// never a panic, and only the one genuine file may decrypt.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("seed state"))
	if err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:headerSize])
	f.Add([]byte(magic))
	f.Add(withByte(good, len(magic)+1, MaxLogN+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := ParseHeader(data); err != nil {
			return
		}
		pt, err := v.decrypt(data)
		if err == nil && !bytes.Equal(data, good) {
			t.Fatalf("forged state file decrypted to %q", pt)
		}
	})
}

func BenchmarkUpdate64KiB(b *testing.B) {
	dir := b.TempDir()
	state := bytes.Repeat([]byte{0x5a}, 64<<10)
	v, err := Create(Dir(dir), pass, testParams, state)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	b.SetBytes(int64(len(state)))
	for b.Loop() {
		if err := v.Update(func(cur []byte) ([]byte, error) {
			cur[0]++ // a real change, so the cycle writes and syncs
			return cur, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeriveKeyDefault(b *testing.B) {
	salt := make([]byte, saltSize)
	for b.Loop() {
		if _, err := deriveKey(pass, DefaultParams, salt); err != nil {
			b.Fatal(err)
		}
	}
}

func TestUnchangedUpdateWritesNothing(t *testing.T) {
	dir := t.TempDir()
	v, err := Create(Dir(dir), pass, testParams, []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	path := filepath.Join(dir, StateFile)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Update(func(cur []byte) ([]byte, error) {
		cur[0] = 'X' // fn may scribble on its input without changing what is stored
		return []byte("same"), nil
	}); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("an unchanged update rewrote the file")
	}
}

// TestOneReceiverPerProfile: a second receiver of one profile (another process, here another
// open file) is refused with the holder's pid until the first lets go, while state updates
// go on beside it.
func TestOneReceiverPerProfile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "profile")
	v, err := Create(Dir(dir), pass, testParams, []byte("s"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	unlock, err := v.LockReceiver()
	if err != nil {
		t.Fatal(err)
	}
	w, err := Open(Dir(dir), pass)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, err = w.LockReceiver()
	if !errors.Is(err, ErrReceiverRunning) {
		t.Fatalf("second LockReceiver: %v, want ErrReceiverRunning", err)
	}
	if want := fmt.Sprintf("(process %d)", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the holder %s", err, want)
	}
	if err := w.Update(func([]byte) ([]byte, error) { return []byte("t"), nil }); err != nil {
		t.Fatalf("update beside a receiver: %v", err)
	}
	unlock()
	unlock2, err := w.LockReceiver()
	if err != nil {
		t.Fatalf("LockReceiver after release: %v", err)
	}
	unlock2()
}
