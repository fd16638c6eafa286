package filecrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"testing"
)

// pattern returns n deterministic plaintext bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func testKey(seed byte) *Key {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = seed + byte(i)
	}
	k, err := NewKey(b)
	if err != nil {
		panic(err)
	}
	return k
}

func seal(t testing.TB, k *Key, pt []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pt); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func open(k *Key, ct []byte) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(ct), k)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

var sizes = []int{0, 1, 100, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2 * ChunkSize, 3*ChunkSize + 5}

func TestRoundTrip(t *testing.T) {
	k := GenerateKey()
	for _, n := range sizes {
		pt := pattern(n)
		ct := seal(t, k, pt)
		if int64(len(ct)) != CiphertextSize(int64(n)) {
			t.Errorf("size %d: ciphertext %d bytes, CiphertextSize says %d", n, len(ct), CiphertextSize(int64(n)))
		}
		if got, err := PlaintextSize(int64(len(ct))); err != nil || got != int64(n) {
			t.Errorf("size %d: PlaintextSize = %d, %v", n, got, err)
		}
		got, err := open(k, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("size %d: open: %v (equal %v)", n, err, bytes.Equal(got, pt))
		}
		// Writes of odd sizes give the same ciphertext: the encoding is unique.
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, k)
		for rest := pt; len(rest) > 0; {
			c := min(len(rest), 1000)
			w.Write(rest[:c])
			rest = rest[c:]
		}
		w.Close()
		if !bytes.Equal(buf.Bytes(), ct) {
			t.Errorf("size %d: small writes give another ciphertext", n)
		}
	}
}

func TestReaderAt(t *testing.T) {
	k := GenerateKey()
	pt := pattern(3*ChunkSize + 5)
	ct := seal(t, k, pt)
	r, err := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), k)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != int64(len(pt)) {
		t.Fatalf("Size = %d, want %d", r.Size(), len(pt))
	}
	for _, c := range []struct{ off, n int }{
		{0, 10}, {ChunkSize - 3, 6}, {ChunkSize, ChunkSize}, {5, 3 * ChunkSize}, {3 * ChunkSize, 5}, {len(pt) - 1, 1},
	} {
		p := make([]byte, c.n)
		n, err := r.ReadAt(p, int64(c.off))
		if err != nil || n != c.n || !bytes.Equal(p, pt[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d, %d) = %d, %v", c.off, c.n, n, err)
		}
	}
	p := make([]byte, 10)
	if n, err := r.ReadAt(p, int64(len(pt)-4)); n != 4 || err != io.EOF || !bytes.Equal(p[:4], pt[len(pt)-4:]) {
		t.Errorf("ReadAt past the end = %d, %v; want 4, EOF", n, err)
	}
}

// TestAttacks is the list of docs/crypto/files.md: every change a server could make to the
// ciphertext it stores fails to decrypt, through both readers.
func TestAttacks(t *testing.T) {
	k := testKey(1)
	pt := pattern(3 * ChunkSize)
	ct := seal(t, k, pt)
	chunk := func(i int) []byte {
		return ct[HeaderSize+i*encChunkSize : HeaderSize+(i+1)*encChunkSize]
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{header[:]}, parts...), nil) }
	other := seal(t, testKey(2), pt)
	flipped := bytes.Clone(ct)
	flipped[HeaderSize+encChunkSize+100] ^= 1
	lastEmptyExtension := append(bytes.Clone(ct), make([]byte, Overhead)...)
	cases := map[string][]byte{
		"truncated at a chunk boundary": join(chunk(0), chunk(1)),
		"truncated inside a chunk":      ct[:len(ct)-100],
		"only the header":               header[:],
		"reordered":                     join(chunk(1), chunk(0), chunk(2)),
		"chunk repeated":                join(chunk(0), chunk(0), chunk(2)),
		"substituted from another file": join(chunk(0), other[HeaderSize+encChunkSize:HeaderSize+2*encChunkSize], chunk(2)),
		"bit flipped":                   flipped,
		"extended by a chunk":           join(chunk(0), chunk(1), chunk(2), chunk(2)),
		"extended by bytes":             append(bytes.Clone(ct), 0),
		"extended by an empty tag":      lastEmptyExtension,
		"empty file forged":             append(header[:], make([]byte, Overhead)...),
	}
	for name, bad := range cases {
		if _, err := open(k, bad); !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Reader err = %v, want an authentication or format error", name, err)
		}
		ra, err := NewReaderAt(bytes.NewReader(bad), int64(len(bad)), k)
		if err == nil {
			_, err = io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
		}
		if !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ReaderAt err = %v, want an authentication or format error", name, err)
		}
	}
	if _, err := open(testKey(3), ct); !errors.Is(err, ErrAuthentication) {
		t.Errorf("wrong key: err = %v, want ErrAuthentication", err)
	}
	// A server lying about the size, to cut the file at a chunk boundary, is caught even
	// when only the first chunk is read: chunk 1 would have to be the last.
	ra, err := NewReaderAt(bytes.NewReader(ct), int64(HeaderSize+2*encChunkSize), k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ra.ReadAt(make([]byte, 10), ChunkSize); !errors.Is(err, ErrAuthentication) {
		t.Errorf("size lie: err = %v, want ErrAuthentication", err)
	}
	v2 := bytes.Clone(ct)
	v2[HeaderSize-1] = 2
	if _, err := open(k, v2); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown version: err = %v, want ErrMalformed", err)
	}
}

func TestBadSizes(t *testing.T) {
	for _, c := range []int64{0, HeaderSize, HeaderSize + Overhead - 1, HeaderSize + encChunkSize + Overhead, HeaderSize + encChunkSize + 3} {
		if _, err := PlaintextSize(c); !errors.Is(err, ErrMalformed) {
			t.Errorf("PlaintextSize(%d) err = %v, want ErrMalformed", c, err)
		}
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := NewKey(make([]byte, n)); err == nil {
			t.Errorf("NewKey of %d bytes: no error", n)
		}
	}
	if CiphertextSize(-1) != -1 || CiphertextSize(MaxPlaintextSize+1) != -1 {
		t.Error("CiphertextSize accepts an impossible size")
	}
}

// TestConstruction recomputes the ciphertext from the primitives as docs/crypto/files.md
// describes them, independently of the Writer.
func TestConstruction(t *testing.T) {
	k := testKey(9)
	pt := pattern(ChunkSize + 10)
	pk, err := hkdf.Key(sha256.New, k.b[:], nil, "guardyn file v1 payload", 32)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(pk)
	gcm, _ := cipher.NewGCM(block)
	want := []byte("GYNFILE\x01")
	n0 := make([]byte, 12)
	want = gcm.Seal(want, n0, pt[:ChunkSize], []byte("GYNFILE\x01"))
	n1 := make([]byte, 12)
	n1[10], n1[11] = 1, 1
	want = gcm.Seal(want, n1, pt[ChunkSize:], []byte("GYNFILE\x01"))
	if got := seal(t, k, pt); !bytes.Equal(got, want) {
		t.Fatal("Writer output differs from the documented construction")
	}
}

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

type vector struct {
	Name string `json:"name"`
	// Key is the file key in hex; the plaintext is pattern(Size).
	Key  string `json:"key"`
	Size int    `json:"size"`
	// Ciphertext is given whole for small vectors, by its SHA-256 for large ones.
	Ciphertext       string `json:"ciphertext,omitempty"`
	CiphertextSHA256 string `json:"ciphertext_sha256"`
}

// TestVectors checks frozen known-answer vectors (our own; there is no official set for
// this construction). -update rewrites them, which must never be needed once released.
func TestVectors(t *testing.T) {
	const path = "testdata/vectors.json"
	if *update {
		var vs []vector
		for i, n := range []int{0, 1, 33, ChunkSize, ChunkSize + 1, 2*ChunkSize + 17} {
			k := testKey(byte(0x10 * i))
			ct := seal(t, k, pattern(n))
			sum := sha256.Sum256(ct)
			v := vector{Name: "pattern", Key: hex.EncodeToString(k.b[:]), Size: n, CiphertextSHA256: hex.EncodeToString(sum[:])}
			if len(ct) <= 128 {
				v.Ciphertext = hex.EncodeToString(ct)
			}
			vs = append(vs, v)
		}
		b, _ := json.MarshalIndent(vs, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) < 6 {
		t.Fatalf("only %d vectors", len(vs))
	}
	for _, v := range vs {
		kb, _ := hex.DecodeString(v.Key)
		k, err := NewKey(kb)
		if err != nil {
			t.Fatal(err)
		}
		ct := seal(t, k, pattern(v.Size))
		sum := sha256.Sum256(ct)
		if hex.EncodeToString(sum[:]) != v.CiphertextSHA256 {
			t.Errorf("vector size %d: ciphertext hash differs", v.Size)
		}
		if v.Ciphertext != "" && hex.EncodeToString(ct) != v.Ciphertext {
			t.Errorf("vector size %d: ciphertext differs", v.Size)
		}
		got, err := open(k, ct)
		if err != nil || !bytes.Equal(got, pattern(v.Size)) {
			t.Errorf("vector size %d: does not decrypt: %v", v.Size, err)
		}
	}
}
