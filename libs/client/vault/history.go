package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// The history holds records (the client's message log) beside the state, so that a growing
// history does not make every state save slower. Each record is sealed on its own with the
// vault key, as nonce (24) | ciphertext (record + 16-byte tag), with associated data
// "GDYNHIST" | u8 version | salt, binding records to this profile; Dir frames them in
// HistoryFile with a u32 length of the ciphertext. Records are appended under the profile
// lock. When the history passes maxHistorySize its older half is dropped. Records are
// authenticated one by one: someone who can write the storage can drop or reorder records
// (it is a convenience log, not evidence), but cannot forge or read one.
const (
	HistoryFile = "history.gdy"
	// MaxRecordSize bounds one history record; it fits the largest log entry, a 32 KiB
	// body even if JSON escapes every byte as \u00XX.
	MaxRecordSize  = 256 << 10
	historyMagic   = "GDYNHIST"
	recordOverhead = 4 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
)

// maxHistorySize is the size (framed as in HistoryFile) past which appending compacts the
// history (about 8000 chat messages). Each append reads the history to measure it (Dir also
// to find its last whole record), so the bound also bounds that read. A variable so tests
// can make compaction happen.
var maxHistorySize = 2 << 20

// UpdateAppend is Update that also appends records to the history, in the same locked
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

// History returns the records of the history, oldest first.
func (v *Vault) History() ([][]byte, error) {
	var out [][]byte
	err := v.locked(func() error {
		sealed, err := v.store.ReadHistory()
		if err != nil {
			return err
		}
		out, err = v.openRecords(sealed)
		return err
	})
	return out, err
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

// openRecords decrypts sealed history records; any record that does not authenticate fails
// the whole read, since it means tampering or another profile's history.
func (v *Vault) openRecords(sealed [][]byte) ([][]byte, error) {
	aead, err := chacha20poly1305.NewX(v.key)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	ad := v.historyAD()
	out := make([][]byte, 0, len(sealed))
	for i, r := range sealed {
		if len(r) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
			return nil, fmt.Errorf("%w: history record %d is %d bytes", ErrMalformed, i, len(r))
		}
		pt, err := aead.Open(nil, r[:chacha20poly1305.NonceSizeX], r[chacha20poly1305.NonceSizeX:], ad)
		if err != nil {
			return nil, fmt.Errorf("%w: history record %d", ErrWrongPassphrase, i)
		}
		out = append(out, pt)
	}
	return out, nil
}

// sealRecord seals one history record as nonce | ciphertext.
func (v *Vault) sealRecord(record []byte) ([]byte, error) {
	if len(record) > MaxRecordSize {
		return nil, fmt.Errorf("vault: history record of %d bytes exceeds %d", len(record), MaxRecordSize)
	}
	aead, err := chacha20poly1305.NewX(v.key)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	nonce := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(record)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, record, v.historyAD()), nil
}

// sealRecords seals each record.
func (v *Vault) sealRecords(records [][]byte) ([][]byte, error) {
	out := make([][]byte, 0, len(records))
	for _, r := range records {
		sealed, err := v.sealRecord(r)
		if err != nil {
			return nil, err
		}
		out = append(out, sealed)
	}
	return out, nil
}

// historySize is the size of sealed records framed as in HistoryFile.
func historySize(sealed [][]byte) int {
	n := 0
	for _, r := range sealed {
		n += 4 + len(r)
	}
	return n
}

// appendHistory appends records, first compacting a history that grew past maxHistorySize.
func (v *Vault) appendHistory(records [][]byte) error {
	old, err := v.store.ReadHistory()
	if err != nil {
		return err
	}
	if historySize(old) > maxHistorySize {
		return v.compactHistory(old, records)
	}
	sealed, err := v.sealRecords(records)
	if err != nil {
		return err
	}
	return v.store.AppendHistory(sealed)
}

// compactHistory replaces the history with its newer half and the new records, atomically
// like the state.
func (v *Vault) compactHistory(sealed, records [][]byte) error {
	old, err := v.openRecords(sealed)
	if err != nil {
		return err
	}
	keep, err := v.sealRecords(append(old[len(old)/2:], records...))
	if err != nil {
		return err
	}
	return v.store.ReplaceHistory(keep)
}
