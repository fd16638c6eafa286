//go:build linux && amd64

// Package powerloss tests crash consistency against a power cut, which kill -9 cannot:
// a killed process leaves its writes in the page cache, which the kernel still writes
// out, while a power cut loses every write that no sync made durable.
//
// [Run] starts a child process under ptrace. The child calls [Child] first, which
// installs a seccomp filter so that the tracer stops it at every write, truncate and sync
// system call. The tracer records, in order, each write and truncate of a file under a
// root directory (with its bytes), each fsync or fdatasync of such a file, each fsync of a
// directory under the root (with the entries it makes durable), and each line the child
// writes to standard output — its acknowledgements. The result is a [Trace].
//
// [Disk] replays a trace and rebuilds the root as a power cut at any event of it would
// have left it: a file holds what its last sync made durable, a directory the entries its
// last fsync saw, and the writes since a file's last sync are lost, kept, torn or kept out
// of order as a [Loss] says. The test opens its store on the rebuilt directory and checks
// it against the lines the child printed before the cut.
//
// The model is POSIX's, stricter than ext4 in practice: fsync or fdatasync of a file makes
// its data and size durable but not its directory entry; a new or removed directory entry
// is durable only after an fsync of its directory. Unsynced directory changes are always
// lost, never partly kept. Files are told apart by path and inode number; a rename gives
// the file a second key that shares its data, so the name a power cut leaves durable
// finds it. write(2) is modeled at the file position, fallocate(2) with KEEP_SIZE as no
// change and sync_file_range(2) as making nothing durable. The tracer checks its model
// against the real files as it goes, so a write it failed to model fails the test
// instead of weakening it.
package powerloss

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Loss says what happens, in a power cut, to the writes made to a file since its last
// sync. Each file's writes are treated independently.
type Loss int

const (
	// DropAll loses every write not followed by a sync.
	DropAll Loss = iota
	// KeepAll keeps every write, as the page cache does after kill -9.
	KeepAll
	// Torn keeps the writes in order up to a random byte inside one of them and loses
	// the rest, as a disk that wrote out the file front to back and stopped.
	Torn
	// Reorder keeps each write or loses it at random, independently of the others, so a
	// later write may survive an earlier one: what writeback in any order leaves.
	Reorder
)

// Losses lists every Loss, for tests that try each.
var Losses = []Loss{DropAll, KeepAll, Torn, Reorder}

func (l Loss) String() string {
	switch l {
	case DropAll:
		return "drop-all"
	case KeepAll:
		return "keep-all"
	case Torn:
		return "torn"
	case Reorder:
		return "reorder"
	}
	return fmt.Sprintf("Loss(%d)", int(l))
}

type kind uint8

const (
	evWrite    kind = iota // data written at off
	evTruncate             // file size set to off
	evSync                 // the file's writes so far made durable
	evDirSync              // the directory's entries made durable
	evLine                 // a line on the child's standard output
	evRename               // file renamed to to: both names now refer to its data
)

// fileKey names a file by its path relative to the root and its inode number, so that a
// path reused after a removal, or an inode number reused by another file, is a new file.
type fileKey struct {
	path string
	ino  uint64
}

// dirent is a directory entry: the inode it names and whether that is a directory.
type dirent struct {
	ino uint64
	dir bool
}

type event struct {
	kind    kind
	file    fileKey // evWrite, evTruncate, evSync, evRename
	to      fileKey // evRename: the new name
	dir     string  // evDirSync: path relative to the root
	off     int64   // evWrite: offset; evTruncate: size
	data    []byte  // evWrite
	entries map[string]dirent
	line    string
}

// Trace is what a child did to the files under its root, in order.
type Trace struct {
	initFiles map[fileKey][]byte
	initDirs  map[string]map[string]dirent
	events    []event
	// lineIdx holds the index of every evLine event.
	lineIdx []int
}

// Len returns the number of events; a cut can come before any of them or after all,
// at 0 through Len().
func (t *Trace) Len() int { return len(t.events) }

// LineEvents returns, for every line the child wrote, its text and the index of its
// event: a cut at or before that index comes before the line was written.
func (t *Trace) LineEvents() (lines []string, at []int) {
	for _, i := range t.lineIdx {
		lines = append(lines, t.events[i].line)
		at = append(at, i)
	}
	return lines, at
}

// Syncs returns the index of every sync event, of files and directories. A cut just
// before one loses the most: every write it would have made durable.
func (t *Trace) Syncs() []int {
	var out []int
	for i, e := range t.events {
		if e.kind == evSync || e.kind == evDirSync {
			out = append(out, i)
		}
	}
	return out
}

// DirSyncs returns the index of every directory sync event. A cut just after one finds
// the entries it made durable and the files it removed gone for good.
func (t *Trace) DirSyncs() []int {
	var out []int
	for i, e := range t.events {
		if e.kind == evDirSync {
			out = append(out, i)
		}
	}
	return out
}

// Summary counts the events by kind, for logs.
func (t *Trace) Summary() string {
	var n [6]int
	var bytes int
	for _, e := range t.events {
		n[e.kind]++
		bytes += len(e.data)
	}
	return fmt.Sprintf("%d writes (%d bytes), %d truncates, %d file syncs, %d directory syncs, %d renames, %d lines",
		n[evWrite], bytes, n[evTruncate], n[evSync], n[evDirSync], n[evRename], n[evLine])
}

// file is a file's state at one point of the replay: what is durable, and the writes
// and truncates since its last sync.
type file struct {
	durable []byte
	pending []*event
}

// Disk is the state of the root at one point of a trace, moved forward by Advance.
type Disk struct {
	t     *Trace
	next  int
	files map[fileKey]*file
	dirs  map[string]map[string]dirent
}

// Replay returns the disk as it was when the trace started; everything on it then is
// durable.
func (t *Trace) Replay() *Disk {
	d := &Disk{t: t, files: map[fileKey]*file{}, dirs: map[string]map[string]dirent{}}
	for k, b := range t.initFiles {
		d.files[k] = &file{durable: bytes.Clone(b)}
	}
	for k, ents := range t.initDirs {
		d.dirs[k] = ents
	}
	return d
}

// Advance replays the events before k. k may not go backwards.
func (d *Disk) Advance(k int) error {
	if k < d.next || k > len(d.t.events) {
		return fmt.Errorf("powerloss: advance to %d from %d of %d events", k, d.next, len(d.t.events))
	}
	for ; d.next < k; d.next++ {
		e := &d.t.events[d.next]
		switch e.kind {
		case evWrite, evTruncate:
			f := d.file(e.file)
			f.pending = append(f.pending, e)
		case evSync:
			f := d.file(e.file)
			for _, p := range f.pending {
				f.durable = apply(f.durable, p, len(p.data))
			}
			f.pending = nil
		case evDirSync:
			d.dirs[e.dir] = e.entries
		case evRename:
			// A file's data is its inode's, whichever name the last directory sync
			// left durable: both names share it from here on.
			d.files[e.to] = d.file(e.file)
		}
	}
	return nil
}

func (d *Disk) file(k fileKey) *file {
	f := d.files[k]
	if f == nil {
		f = &file{}
		d.files[k] = f
	}
	return f
}

// apply applies the first n bytes of a write, or a truncate, to b.
func apply(b []byte, e *event, n int) []byte {
	switch e.kind {
	case evTruncate:
		if int(e.off) <= len(b) {
			return b[:e.off]
		}
		return append(b, make([]byte, int(e.off)-len(b))...)
	case evWrite:
		end := int(e.off) + n
		if end > len(b) {
			b = append(b, make([]byte, end-len(b))...)
		}
		copy(b[e.off:end], e.data[:n])
	}
	return b
}

// content returns what a file holds after a power cut with loss.
func (f *file) content(loss Loss, rng *rand.Rand) []byte {
	b := bytes.Clone(f.durable)
	switch loss {
	case KeepAll:
		for _, p := range f.pending {
			b = apply(b, p, len(p.data))
		}
	case Torn:
		if len(f.pending) == 0 {
			break
		}
		stop := rng.IntN(len(f.pending))
		for _, p := range f.pending[:stop] {
			b = apply(b, p, len(p.data))
		}
		// Cut inside the write: losing it whole is DropAll's case.
		if p := f.pending[stop]; p.kind == evWrite && len(p.data) > 1 {
			b = apply(b, p, 1+rng.IntN(len(p.data)-1))
		}
	case Reorder:
		for _, p := range f.pending {
			if rng.IntN(2) == 0 {
				b = apply(b, p, len(p.data))
			}
		}
	}
	return b
}

// Restore writes the root as a power cut at the current point with loss would leave it
// into dir, which must not exist. rng draws the random parts of Torn and Reorder.
func (d *Disk) Restore(dir string, loss Loss, rng *rand.Rand) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("powerloss: restore: %w", err)
	}
	return d.restoreDir(dir, ".", loss, rng)
}

func (d *Disk) restoreDir(dst, rel string, loss Loss, rng *rand.Rand) error {
	ents := d.dirs[rel]
	names := make([]string, 0, len(ents))
	for name := range ents {
		names = append(names, name)
	}
	// Sorted, so that a seed gives the same disk every time.
	slices.Sort(names)
	for _, name := range names {
		ent := ents[name]
		path, childRel := filepath.Join(dst, name), filepath.Join(rel, name)
		if ent.dir {
			if err := os.Mkdir(path, 0o700); err != nil {
				return fmt.Errorf("powerloss: restore: %w", err)
			}
			if err := d.restoreDir(path, childRel, loss, rng); err != nil {
				return err
			}
			continue
		}
		var b []byte
		if f := d.files[fileKey{childRel, ent.ino}]; f != nil {
			b = f.content(loss, rng)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("powerloss: restore: %w", err)
		}
	}
	return nil
}

// snapshot reads the tree under root: every directory's entries and every file's bytes.
func snapshot(root string) (map[fileKey][]byte, map[string]map[string]dirent, error) {
	files := map[fileKey][]byte{}
	dirs := map[string]map[string]dirent{}
	err := filepath.WalkDir(root, func(path string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if de.IsDir() {
			ents, err := listDir(path)
			if err != nil {
				return err
			}
			dirs[rel] = ents
			return nil
		}
		if !de.Type().IsRegular() {
			return fmt.Errorf("powerloss: %s is neither a file nor a directory", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		ino, err := inode(path)
		if err != nil {
			return err
		}
		files[fileKey{rel, ino}] = b
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("powerloss: snapshot %s: %w", root, err)
	}
	return files, dirs, nil
}

// listDir returns the entries of the directory at path.
func listDir(path string) (map[string]dirent, error) {
	des, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	ents := make(map[string]dirent, len(des))
	for _, de := range des {
		ino, err := inode(filepath.Join(path, de.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		ents[de.Name()] = dirent{ino: ino, dir: de.IsDir()}
	}
	return ents, nil
}

// relUnder returns path relative to root, or false if it is not root or inside it.
func relUnder(root, path string) (string, bool) {
	path = strings.TrimSuffix(path, " (deleted)")
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}
