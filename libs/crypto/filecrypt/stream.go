package filecrypt

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// Writer encrypts what is written to it into an underlying writer. Close writes the last
// chunk: without it the ciphertext is truncated and will not decrypt.
type Writer struct {
	dst    io.Writer
	aead   cipher.AEAD
	buf    []byte // plaintext of the chunk being filled, then its ciphertext
	n      int    // plaintext bytes in buf
	index  uint64
	nonce  [12]byte
	err    error
	closed bool
}

// NewWriter writes the header to dst and returns a Writer that encrypts under k.
func NewWriter(dst io.Writer, k *Key) (*Writer, error) {
	a, err := k.aead()
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(header[:]); err != nil {
		return nil, fmt.Errorf("filecrypt: write header: %w", err)
	}
	return &Writer{dst: dst, aead: a, buf: make([]byte, encChunkSize)}, nil
}

// Write encrypts p. A full chunk is held back until more data arrives, because only then
// is it known not to be the last.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("filecrypt: write after close")
	}
	total := 0
	for len(p) > 0 {
		if w.n == ChunkSize {
			if err := w.flush(false); err != nil {
				return total, err
			}
		}
		c := copy(w.buf[w.n:ChunkSize], p)
		w.n += c
		p = p[c:]
		total += c
	}
	return total, nil
}

// Close seals and writes the last chunk. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	return w.flush(true)
}

func (w *Writer) flush(final bool) error {
	if w.index >= uint64(maxChunks) {
		w.err = errors.New("filecrypt: plaintext too large")
		return w.err
	}
	nonce(&w.nonce, w.index, final)
	ct := w.aead.Seal(w.buf[:0], w.nonce[:], w.buf[:w.n], header[:])
	if _, err := w.dst.Write(ct); err != nil {
		w.err = fmt.Errorf("filecrypt: write chunk %d: %w", w.index, err)
		return w.err
	}
	w.index++
	w.n = 0
	return nil
}

// Reader decrypts a ciphertext stream. It returns no plaintext of a chunk before that
// chunk is authenticated, and reports io.EOF only after the last chunk authenticated and
// nothing follows it.
type Reader struct {
	src   io.Reader
	aead  cipher.AEAD
	buf   []byte // one encrypted chunk and one byte of lookahead
	pbuf  []byte // plaintext of the last chunk opened
	have  int    // bytes of buf read from src (ciphertext, then lookahead)
	plain []byte // decrypted bytes not yet returned
	index uint64
	nonce [12]byte
	done  bool
	err   error
}

// NewReader reads and checks the header from src and returns a Reader decrypting under k.
func NewReader(src io.Reader, k *Key) (*Reader, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(src, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: no header", ErrMalformed)
		}
		return nil, fmt.Errorf("filecrypt: read header: %w", err)
	}
	if err := checkHeader(h[:]); err != nil {
		return nil, err
	}
	a, err := k.aead()
	if err != nil {
		return nil, err
	}
	return &Reader{src: src, aead: a, buf: make([]byte, encChunkSize+1), pbuf: make([]byte, ChunkSize)}, nil
}

// Read returns decrypted plaintext.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.next()
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

// next reads and opens one chunk. A chunk is the last one when the stream ends within it
// or right after it (the lookahead byte is missing).
func (r *Reader) next() error {
	// buf[0] may hold the lookahead byte of the previous read.
	n, err := io.ReadFull(r.src, r.buf[r.have:])
	r.have += n
	final := false
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		final = true
	default:
		return fmt.Errorf("filecrypt: read chunk %d: %w", r.index, err)
	}
	ctLen := r.have
	if !final {
		ctLen = encChunkSize
	}
	if ctLen < Overhead || (final && ctLen == Overhead && r.index > 0) {
		// Nothing, a torn tag, or an empty last chunk after full ones: the stream was
		// cut or padded.
		return fmt.Errorf("%w: chunk %d: stream ends early", ErrAuthentication, r.index)
	}
	if r.index >= uint64(maxChunks) {
		return fmt.Errorf("%w: too many chunks", ErrMalformed)
	}
	nonce(&r.nonce, r.index, final)
	pt, err := r.aead.Open(r.pbuf[:0], r.nonce[:], r.buf[:ctLen], header[:])
	if err != nil {
		return fmt.Errorf("%w: chunk %d", ErrAuthentication, r.index)
	}
	r.index++
	r.plain = pt
	if final {
		r.done = true
		r.have = 0
		return nil
	}
	// Keep the lookahead byte for the next chunk.
	r.buf[0] = r.buf[encChunkSize]
	r.have = 1
	return nil
}
