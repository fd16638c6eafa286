package filecrypt

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// ReaderAt decrypts any plaintext range of a ciphertext reached through an io.ReaderAt,
// reading only the chunks that cover the range. The ciphertext size must come from a
// source the reader trusts as much as the key (the message that carried the key): the
// position of the last chunk follows from it, so a server that lies about the size fails
// authentication instead of truncating the file.
type ReaderAt struct {
	src   io.ReaderAt
	aead  cipher.AEAD
	size  int64 // plaintext size
	last  uint64
	csize int64
}

// NewReaderAt checks the header of src and returns a ReaderAt for a ciphertext of
// ciphertextSize bytes decrypting under k.
func NewReaderAt(src io.ReaderAt, ciphertextSize int64, k *Key) (*ReaderAt, error) {
	size, err := PlaintextSize(ciphertextSize)
	if err != nil {
		return nil, err
	}
	var h [HeaderSize]byte
	if _, err := src.ReadAt(h[:], 0); err != nil {
		return nil, fmt.Errorf("filecrypt: read header: %w", err)
	}
	if err := checkHeader(h[:]); err != nil {
		return nil, err
	}
	a, err := k.aead()
	if err != nil {
		return nil, err
	}
	r := &ReaderAt{src: src, aead: a, size: size, csize: ciphertextSize}
	if size > 0 {
		r.last = uint64((size - 1) / ChunkSize)
		return r, nil
	}
	// An empty file has no plaintext range to read, so its one (empty, last) chunk is
	// authenticated here: otherwise any 24 bytes would pass for an empty file.
	var ct [Overhead]byte
	if _, err := src.ReadAt(ct[:], HeaderSize); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("filecrypt: read chunk 0: %w", err)
	}
	var n [12]byte
	nonce(&n, 0, true)
	if _, err := a.Open(nil, n[:], ct[:], header[:]); err != nil {
		return nil, fmt.Errorf("%w: chunk 0", ErrAuthentication)
	}
	return r, nil
}

// Size returns the plaintext size.
func (r *ReaderAt) Size() int64 { return r.size }

// ReadAt decrypts len(p) bytes of plaintext starting at off. Like io.ReaderAt it returns
// io.EOF when fewer than len(p) bytes remain.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("filecrypt: negative offset")
	}
	if off >= r.size {
		if len(p) == 0 && off == r.size {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if rest := r.size - off; int64(want) > rest {
		want = int(rest)
	}
	buf := make([]byte, encChunkSize)
	var nonceBuf [12]byte
	n := 0
	for n < want {
		i := uint64((off + int64(n)) / ChunkSize)
		cOff := int64(HeaderSize) + int64(i)*encChunkSize
		cLen := int64(encChunkSize)
		if rest := r.csize - cOff; rest < cLen {
			cLen = rest
		}
		ct := buf[:cLen]
		if _, err := r.src.ReadAt(ct, cOff); err != nil && !(errors.Is(err, io.EOF) && len(ct) == int(cLen)) {
			return n, fmt.Errorf("filecrypt: read chunk %d: %w", i, err)
		}
		nonce(&nonceBuf, i, i == r.last)
		pt, err := r.aead.Open(ct[:0], nonceBuf[:], ct, header[:])
		if err != nil {
			return n, fmt.Errorf("%w: chunk %d", ErrAuthentication, i)
		}
		within := (off + int64(n)) - int64(i)*ChunkSize
		n += copy(p[n:want], pt[within:])
	}
	if want < len(p) {
		return n, io.EOF
	}
	return n, nil
}
