package filecrypt

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecrypt feeds arbitrary ciphertext to both readers: neither may panic, both must
// agree, an error must be a format or authentication error, and whatever decrypts must
// re-encrypt to the same bytes (each plaintext has exactly one ciphertext per key).
func FuzzDecrypt(f *testing.F) {
	k := testKey(7)
	// Small seeds only: minimizing a 64 KiB input takes the fuzzer most of a minute.
	for _, n := range []int{0, 1, 200} {
		f.Add(seal(f, k, pattern(n)))
	}
	f.Add([]byte("GYNFILE\x02"))
	f.Fuzz(func(t *testing.T, ct []byte) {
		pt, err := open(k, ct)
		if err != nil {
			if !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Reader: unexpected error %v", err)
			}
		} else if again := seal(t, k, pt); !bytes.Equal(again, ct) {
			t.Fatal("a ciphertext decrypted but is not the encryption of its plaintext")
		}
		ra, raErr := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), k)
		var raPT []byte
		if raErr == nil {
			raPT, raErr = io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
		}
		if (err == nil) != (raErr == nil) || (err == nil && !bytes.Equal(pt, raPT)) {
			t.Fatalf("readers disagree: Reader %v, ReaderAt %v", err, raErr)
		}
	})
}
