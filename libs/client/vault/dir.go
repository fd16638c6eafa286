package vault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// File names inside a profile directory.
const (
	StateFile    = "state.gdy"
	lockFile     = "state.lock"
	receiverFile = "receiver.lock"
)

// Dir is the Storage of a profile directory, shared safely by the processes of one machine:
// the state in StateFile, replaced atomically (temp file, fsync, rename, fsync of the
// directory); the history in HistoryFile, appended and fsynced; the locks are flocks of
// files beside them (the kernel drops them when a process dies). File locks exist on Linux
// and the BSDs, macOS included; elsewhere (js/wasm, Windows) Lock and LockReceiver fail,
// and an app keeps its profile in another Storage.
type Dir string

var _ Storage = Dir("")

func (d Dir) path(name string) string { return filepath.Join(string(d), name) }

// Init creates the directory with mode 0700 if needed.
func (d Dir) Init() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("vault: create profile directory: %w", err)
	}
	return nil
}

// Lock takes an exclusive flock on the profile's lock file, waiting for it. The lock is held
// for one cycle only, never for the life of a process, so `listen` in one terminal and
// `send` in another interleave.
func (d Dir) Lock() (func(), error) {
	f, err := os.OpenFile(d.path(lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("vault: open lock: %w", err)
	}
	if _, err := flockFile(f, true); err != nil {
		f.Close()
		return nil, fmt.Errorf("vault: lock profile: %w", err)
	}
	return func() {
		funlockFile(f)
		f.Close()
	}, nil
}

// LockReceiver takes the receiver lock file without waiting. When another process holds it,
// the error names that process (its pid, written into the file; advisory only).
func (d Dir) LockReceiver() (func(), error) {
	f, err := os.OpenFile(d.path(receiverFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vault: open receiver lock: %w", err)
	}
	held, err := flockFile(f, false)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vault: take receiver lock: %w", err)
	}
	if !held {
		holder, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if pid := strings.TrimSpace(string(holder)); pid != "" {
			return nil, fmt.Errorf("%w (process %s)", ErrReceiverRunning, pid)
		}
		return nil, ErrReceiverRunning
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return func() {
		funlockFile(f)
		f.Close()
	}, nil
}

// ReadState reads StateFile.
func (d Dir) ReadState() ([]byte, error) { return readBounded(d.path(StateFile)) }

// WriteState replaces StateFile: temp file, fsync, rename, fsync of the directory.
func (d Dir) WriteState(sealed []byte) error { return d.replaceFile(StateFile, sealed) }

// The history file frames each sealed record (nonce | ciphertext) as
//
//	u32 length of ciphertext | nonce (24) | ciphertext (record + 16-byte tag)
//
// A record torn by a crash is cut off before the next append.

// ReadHistory reads the well-formed records of HistoryFile.
func (d Dir) ReadHistory() ([][]byte, error) {
	data, err := d.readHistory()
	if err != nil {
		return nil, err
	}
	records, _ := ParseRecords(data)
	return records, nil
}

func (d Dir) readHistory() ([]byte, error) {
	data, err := readBounded(d.path(HistoryFile))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return data, err
}

// AppendHistory cuts off a torn tail, appends the framed records and fsyncs the file (and
// the directory when it created the file).
func (d Dir) AppendHistory(sealed [][]byte) error {
	data, err := d.readHistory()
	if err != nil {
		return err
	}
	_, end := ParseRecords(data)
	created := data == nil
	f, err := os.OpenFile(d.path(HistoryFile), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("vault: open history: %w", err)
	}
	defer f.Close()
	if end != len(data) {
		if err := f.Truncate(int64(end)); err != nil {
			return fmt.Errorf("vault: cut torn history record: %w", err)
		}
	}
	if _, err := f.WriteAt(frameRecords(sealed), int64(end)); err != nil {
		return fmt.Errorf("vault: append history: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("vault: sync history: %w", err)
	}
	if created {
		return syncDir(string(d))
	}
	return nil
}

// ReplaceHistory rewrites HistoryFile atomically, as WriteState does StateFile.
func (d Dir) ReplaceHistory(sealed [][]byte) error {
	return d.replaceFile(HistoryFile, frameRecords(sealed))
}

func frameRecords(sealed [][]byte) []byte {
	var out []byte
	for _, r := range sealed {
		out = binary.BigEndian.AppendUint32(out, uint32(len(r)-chacha20poly1305.NonceSizeX))
		out = append(out, r...)
	}
	return out
}

// Remove deletes StateFile and HistoryFile and fsyncs the directory.
func (d Dir) Remove() error {
	if err := os.Remove(d.path(StateFile)); err != nil {
		return fmt.Errorf("vault: remove state file: %w", err)
	}
	if err := os.Remove(d.path(HistoryFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("vault: remove history: %w", err)
	}
	return syncDir(string(d))
}

// replaceFile replaces the file name with data: temp file, fsync, rename, fsync of the
// directory.
func (d Dir) replaceFile(name string, out []byte) error {
	tmp, err := os.CreateTemp(string(d), name+".tmp*")
	if err != nil {
		return fmt.Errorf("vault: write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return fmt.Errorf("vault: write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("vault: sync %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("vault: write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), d.path(name)); err != nil {
		return fmt.Errorf("vault: replace %s: %w", name, err)
	}
	return syncDir(string(d))
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("vault: read state: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vault: read state: %w", err)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, st.Size(), MaxFileSize)
	}
	buf := make([]byte, st.Size())
	if _, err := f.ReadAt(buf, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("vault: read state: %w", err)
	}
	return buf, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("vault: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("vault: sync directory: %w", err)
	}
	return nil
}
