package filecrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"io"
	"testing"
)

// The stream benchmarks run beside raw AES-256-GCM over the same chunk size: the ratio is
// the cost of the construction (key derivation, nonces, buffering).

func BenchmarkAESGCM64KiB(b *testing.B) {
	block, _ := aes.NewCipher(make([]byte, 32))
	gcm, _ := cipher.NewGCM(block)
	buf := make([]byte, ChunkSize, encChunkSize)
	nonce := make([]byte, 12)
	b.SetBytes(ChunkSize)
	for b.Loop() {
		gcm.Seal(buf[:0], nonce, buf[:ChunkSize], nil)
	}
}

func BenchmarkEncrypt(b *testing.B) {
	pt := pattern(8 << 20)
	k := GenerateKey()
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		w, _ := NewWriter(io.Discard, k)
		w.Write(pt)
		w.Close()
	}
}

func BenchmarkDecrypt(b *testing.B) {
	k := GenerateKey()
	ct := seal(b, k, pattern(8<<20))
	b.SetBytes(8 << 20)
	for b.Loop() {
		r, _ := NewReader(bytesReader(ct), k)
		io.Copy(io.Discard, r)
	}
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
