package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"
)

// The history file holds records (the client's message log) beside the state, so that a
// growing history does not make every state save slower. Each record is sealed on its own
// with the vault key:
//
//	u32 length of ciphertext | nonce (24) | ciphertext (record + 16-byte tag)
//
// with associated data "GDYNHIST" | u8 version | salt, binding records to this profile.
// Records are appended under the profile lock; a record torn by a crash is cut off before
// the next append. When the file passes maxHistorySize its older half is dropped. Records
// are authenticated one by one: someone who can write the file can drop or reorder records
// (it is a convenience log, not evidence), but cannot forge or read one.
const (
	HistoryFile = "history.gdy"
	// MaxRecordSize bounds one history record; it fits the largest log entry, a 32 KiB
	// body even if JSON escapes every byte as \u00XX.
	MaxRecordSize  = 256 << 10
	historyMagic   = "GDYNHIST"
	recordOverhead = 4 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
)

// maxHistorySize is the size past which appending compacts the history file (about 8000
// chat messages). Each append reads the file to find its last whole record, so the bound
// also bounds that read. A variable so tests can make compaction happen.
var maxHistorySize = 2 << 20

// UpdateAppend is Update that also appends records to the history file, in the same locked
// cycle. The records are written and synced before the state, so a crash in between leaves
// records whose state change is lost: callers that redo the work must tolerate duplicates.
func (v *Vault) UpdateAppend(fn func(current []byte) (next []byte, records [][]byte, err error)) error {
	return v.locked(func() error {
		cur, err := v.load()
		if err != nil {
			return err
		}
		next, records, err := fn(bytes.Clone(cur))
		if err != nil {
			return err
		}
		if len(records) > 0 {
			if err := v.appendHistory(records); err != nil {
				return err
			}
		}
		if bytes.Equal(next, cur) {
			return nil
		}
		return v.write(next)
	})
}

// History returns the records of the history file, oldest first.
func (v *Vault) History() ([][]byte, error) {
	var out [][]byte
	err := v.locked(func() error {
		data, err := v.readHistory()
		if err != nil {
			return err
		}
		out, _, err = v.openRecords(data)
		return err
	})
	return out, err
}

func (v *Vault) historyPath() string { return filepath.Join(v.dir, HistoryFile) }

func (v *Vault) readHistory() ([]byte, error) {
	data, err := readBounded(v.historyPath())
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return data, err
}

func (v *Vault) historyAD() []byte {
	ad := append([]byte(historyMagic), version)
	return append(ad, v.salt[:]...)
}

// ParseRecords splits a history file into its sealed records without decrypting them, and
// returns the length of the well-formed prefix: a trailing record torn by a crash is left
// out.
func ParseRecords(data []byte) (records [][]byte, end int) {
	for off := 0; ; {
		if len(data)-off < 4 {
			return records, off
		}
		n := int(binary.BigEndian.Uint32(data[off:]))
		if n < chacha20poly1305.Overhead || n > MaxRecordSize+chacha20poly1305.Overhead || len(data)-off-4-chacha20poly1305.NonceSizeX < n {
			return records, off
		}
		size := 4 + chacha20poly1305.NonceSizeX + n
		records = append(records, data[off+4:off+size])
		off += size
	}
}

// openRecords decrypts the records of a history file; any record that does not
// authenticate fails the whole read, since it means tampering or another profile's file.
func (v *Vault) openRecords(data []byte) ([][]byte, int, error) {
	sealed, end := ParseRecords(data)
	aead, err := chacha20poly1305.NewX(v.key)
	if err != nil {
		return nil, 0, fmt.Errorf("vault: %w", err)
	}
	ad := v.historyAD()
	out := make([][]byte, 0, len(sealed))
	for i, r := range sealed {
		pt, err := aead.Open(nil, r[:chacha20poly1305.NonceSizeX], r[chacha20poly1305.NonceSizeX:], ad)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: history record %d", ErrWrongPassphrase, i)
		}
		out = append(out, pt)
	}
	return out, end, nil
}

func (v *Vault) sealRecord(dst, record []byte) ([]byte, error) {
	if len(record) > MaxRecordSize {
		return nil, fmt.Errorf("vault: history record of %d bytes exceeds %d", len(record), MaxRecordSize)
	}
	aead, err := chacha20poly1305.NewX(v.key)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(record)+aead.Overhead()))
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	dst = append(dst, nonce...)
	return aead.Seal(dst, nonce, record, v.historyAD()), nil
}

// appendHistory appends records, first cutting off a torn tail and compacting a file that
// grew past maxHistorySize.
func (v *Vault) appendHistory(records [][]byte) error {
	data, err := v.readHistory()
	if err != nil {
		return err
	}
	if len(data) > maxHistorySize {
		return v.compactHistory(data, records)
	}
	var out []byte
	for _, r := range records {
		if out, err = v.sealRecord(out, r); err != nil {
			return err
		}
	}
	_, end := ParseRecords(data)
	created := data == nil
	f, err := os.OpenFile(v.historyPath(), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("vault: open history: %w", err)
	}
	defer f.Close()
	if end != len(data) {
		if err := f.Truncate(int64(end)); err != nil {
			return fmt.Errorf("vault: cut torn history record: %w", err)
		}
	}
	if _, err := f.WriteAt(out, int64(end)); err != nil {
		return fmt.Errorf("vault: append history: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("vault: sync history: %w", err)
	}
	if created {
		return syncDir(v.dir)
	}
	return nil
}

// compactHistory rewrites the history with its newer half and the new records, atomically
// like the state file.
func (v *Vault) compactHistory(data []byte, records [][]byte) error {
	old, _, err := v.openRecords(data)
	if err != nil {
		return err
	}
	keep := append(old[len(old)/2:], records...)
	var out []byte
	for _, r := range keep {
		if out, err = v.sealRecord(out, r); err != nil {
			return err
		}
	}
	return v.replaceFile(v.historyPath(), out)
}
