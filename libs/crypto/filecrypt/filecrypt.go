// Package filecrypt encrypts files for upload to the media service: a fresh random key per
// file and a chunked AEAD stream in the manner of age's STREAM construction, so that a
// server holding the ciphertext can neither read it nor truncate, reorder, substitute or
// extend it without the reader noticing. The construction is specified in
// docs/crypto/files.md.
//
// A sender calls [GenerateKey], encrypts with [NewWriter], uploads the ciphertext and sends
// the key (with the ciphertext's SHA-256) inside an end-to-end encrypted message. A receiver
// decrypts the whole stream with [NewReader], or any plaintext range with [NewReaderAt]
// (for example a video player seeking), fetching only the ciphertext chunks that cover it.
//
// Ciphertext layout: an 8-byte header ("GYNFILE" and the version byte 1), then the
// plaintext cut into [ChunkSize]-byte chunks, each sealed with AES-256-GCM into
// ChunkSize+16 bytes; the last chunk may be shorter and is never empty unless the whole
// plaintext is. The nonce of chunk i is i as an 11-byte big-endian counter followed by a
// flag byte, 1 for the last chunk and 0 otherwise; the header is every chunk's additional
// data. The AES key is HKDF-SHA256 of the file key with info "guardyn file v1 payload".
package filecrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// ChunkSize is the plaintext size of every chunk but the last: 64 KiB, as in age, so
	// a seek costs at most one chunk of extra download and decryption.
	ChunkSize = 64 << 10
	// KeySize is the size of a file key in bytes.
	KeySize = 32
	// HeaderSize is the size of the ciphertext header in bytes.
	HeaderSize = 8
	// Overhead is the authentication tag added to every chunk.
	Overhead = 16

	encChunkSize = ChunkSize + Overhead
	// maxChunks keeps the chunk counter below 2^64 (the counter field has 88 bits, we
	// use the low 64) and the ciphertext size representable as an int64.
	maxChunks int64 = (1<<63 - 1 - HeaderSize) / encChunkSize
	// MaxPlaintextSize is the largest plaintext this package encrypts.
	MaxPlaintextSize = maxChunks * ChunkSize

	payloadInfo = "guardyn file v1 payload"
)

// header starts every ciphertext; its last byte is the format version.
var header = [HeaderSize]byte{'G', 'Y', 'N', 'F', 'I', 'L', 'E', 1}

var (
	// ErrMalformed means the ciphertext cannot be a valid encrypted file: an unknown
	// header or version, or a size no plaintext encrypts to.
	ErrMalformed = errors.New("filecrypt: malformed ciphertext")
	// ErrAuthentication means a chunk failed authentication: the ciphertext was
	// modified, truncated, reordered or extended, or the key is wrong.
	ErrAuthentication = errors.New("filecrypt: chunk failed authentication")
)

// Key is a file key. It is incomparable because == would not run in constant time.
type Key struct {
	_ [0]func()
	b [KeySize]byte
}

// GenerateKey returns a fresh random file key. Every file gets its own key: the chunk
// nonces are a counter, safe only because no key encrypts two files.
func GenerateKey() *Key {
	k := &Key{}
	rand.Read(k.b[:]) // never fails; crashes the program if the system has no randomness
	return k
}

// NewKey parses a key from its KeySize bytes, as received in a message.
func NewKey(b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("filecrypt: key is %d bytes, want %d", len(b), KeySize)
	}
	k := &Key{}
	copy(k.b[:], b)
	return k, nil
}

// Bytes returns a copy of the key's bytes, to send to the recipients.
func (k *Key) Bytes() []byte { return append([]byte(nil), k.b[:]...) }

// aead derives the payload AEAD of k.
func (k *Key) aead() (cipher.AEAD, error) {
	pk, err := hkdf.Key(sha256.New, k.b[:], nil, payloadInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("filecrypt: derive payload key: %w", err)
	}
	block, err := aes.NewCipher(pk)
	clear(pk)
	if err != nil {
		return nil, fmt.Errorf("filecrypt: %w", err)
	}
	return cipher.NewGCM(block)
}

// nonce writes the nonce of chunk i into n.
func nonce(n *[12]byte, i uint64, final bool) {
	clear(n[:3])
	binary.BigEndian.PutUint64(n[3:11], i)
	n[11] = 0
	if final {
		n[11] = 1
	}
}

// CiphertextSize returns the size of the ciphertext of a plaintext of n bytes, or -1 when
// n is negative or above MaxPlaintextSize.
func CiphertextSize(n int64) int64 {
	if n < 0 || n > MaxPlaintextSize {
		return -1
	}
	chunks := (n + ChunkSize - 1) / ChunkSize
	if chunks == 0 {
		chunks = 1
	}
	return int64(HeaderSize) + n + chunks*Overhead
}

// PlaintextSize returns the plaintext size a ciphertext of size c decrypts to, or an error
// wrapping ErrMalformed when no plaintext encrypts to c bytes.
func PlaintextSize(c int64) (int64, error) {
	body := c - int64(HeaderSize)
	if body < Overhead {
		return 0, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, c)
	}
	full, rem := body/encChunkSize, body%encChunkSize
	switch {
	case rem == 0:
		return full * ChunkSize, nil
	case rem < Overhead || (rem == Overhead && full > 0):
		// A last chunk shorter than a tag, or an empty last chunk after full ones.
		return 0, fmt.Errorf("%w: %d bytes is no valid ciphertext size", ErrMalformed, c)
	}
	return full*ChunkSize + rem - Overhead, nil
}

// checkHeader reports whether b starts with the header of a known version.
func checkHeader(b []byte) error {
	if len(b) < HeaderSize || string(b[:HeaderSize-1]) != string(header[:HeaderSize-1]) {
		return fmt.Errorf("%w: not an encrypted file", ErrMalformed)
	}
	if b[HeaderSize-1] != header[HeaderSize-1] {
		return fmt.Errorf("%w: unknown version %d", ErrMalformed, b[HeaderSize-1])
	}
	return nil
}
