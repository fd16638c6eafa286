// Package vault keeps a client profile's secrets in one passphrase-encrypted state, with an
// encrypted append-only history beside it, that several processes share safely: scrypt
// derives the key, XChaCha20-Poly1305 seals the contents, every load-modify-save cycle runs
// under the profile's exclusive lock and replaces the state atomically. Where the bytes live
// is a [Storage]: files ([Dir]) for the command-line app, IndexedDB in a browser. The formats
// are described in docs/cli.md ("How the client works").
//
// Layout of the sealed state (version 1), all of it authenticated as associated data except
// the ciphertext itself:
//
//	magic "GDYNSTATE" | u8 version | u8 log2(N) | u8 r | u8 p | salt (16) | nonce (24) | ciphertext
//
// References: RFC 7914 (scrypt), draft-irtf-cfrg-xchacha (XChaCha20-Poly1305).
package vault

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/scrypt"
)

// Format constants.
const (
	version    = 1
	saltSize   = 16
	headerSize = len(magic) + 4 + saltSize + chacha20poly1305.NonceSizeX
	// MaxFileSize bounds the state file; decoders refuse anything larger before reading it
	// whole.
	MaxFileSize = 64 << 20
	// Bounds on the scrypt parameters a file may ask for, so that a planted file cannot make
	// the client spend minutes or gigabytes deriving a key. MinLogN keeps tests fast; real
	// profiles use DefaultParams.
	MinLogN, MaxLogN = 10, 20
	maxR, maxP       = 16, 4
)

const magic = "GDYNSTATE"

// Params are the scrypt cost parameters of a new state file.
type Params struct {
	LogN uint8 // log2 of the CPU/memory cost N
	R, P uint8
}

// DefaultParams costs about 100 ms and 32 MiB per key derivation (N=2^15, r=8, p=1, the
// interactive-login figure of RFC 7914's authors); it runs once per process.
var DefaultParams = Params{LogN: 15, R: 8, P: 1}

// Errors callers can test with errors.Is.
var (
	// ErrNotFound reports a profile (a Storage) without a state.
	ErrNotFound = errors.New("vault: no state file")
	// ErrExists reports an attempt to create a state file where one already exists.
	ErrExists = errors.New("vault: state file already exists")
	// ErrWrongPassphrase reports a state file that does not decrypt under the passphrase
	// (or was tampered with: the two are indistinguishable by design).
	ErrWrongPassphrase = errors.New("vault: wrong passphrase or corrupted state file")
	// ErrMalformed reports a file that is not a state file.
	ErrMalformed = errors.New("vault: malformed state file")
	// ErrUnsupportedVersion reports a state file of a version this code does not know.
	ErrUnsupportedVersion = errors.New("vault: unsupported state file version")
	// ErrBadParams reports scrypt parameters outside the accepted bounds.
	ErrBadParams = errors.New("vault: scrypt parameters out of bounds")
	// ErrReceiverRunning reports that another process (or tab) already holds the
	// profile's receiver lock (it is receiving for this device).
	ErrReceiverRunning = errors.New("vault: another process is receiving for this profile")
)

// Header is the cleartext, authenticated prefix of a state file.
type Header struct {
	Params Params
	Salt   [saltSize]byte
	Nonce  [chacha20poly1305.NonceSizeX]byte
}

// ParseHeader decodes and bounds-checks the header at the start of data and returns it with
// the ciphertext that follows.
func ParseHeader(data []byte) (Header, []byte, error) {
	var h Header
	if len(data) > MaxFileSize {
		return h, nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(data), MaxFileSize)
	}
	if len(data) < headerSize || !bytes.HasPrefix(data, []byte(magic)) {
		return h, nil, ErrMalformed
	}
	b := data[len(magic):]
	if b[0] != version {
		return h, nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, b[0])
	}
	h.Params = Params{LogN: b[1], R: b[2], P: b[3]}
	if err := h.Params.check(); err != nil {
		return h, nil, err
	}
	b = b[4:]
	b = b[copy(h.Salt[:], b):]
	b = b[copy(h.Nonce[:], b):]
	if len(b) < chacha20poly1305.Overhead {
		return h, nil, fmt.Errorf("%w: ciphertext shorter than its tag", ErrMalformed)
	}
	return h, b, nil
}

// AppendBinary appends the encoded header to b.
func (h Header) AppendBinary(b []byte) []byte {
	b = append(b, magic...)
	b = append(b, version, h.Params.LogN, h.Params.R, h.Params.P)
	b = append(b, h.Salt[:]...)
	return append(b, h.Nonce[:]...)
}

func (p Params) check() error {
	if p.LogN < MinLogN || p.LogN > MaxLogN || p.R == 0 || p.R > maxR || p.P == 0 || p.P > maxP {
		return fmt.Errorf("%w: log2(N)=%d r=%d p=%d", ErrBadParams, p.LogN, p.R, p.P)
	}
	return nil
}

// Vault is an open profile with its key derived. The key stays in memory for the life of
// the Vault, so each load or save costs one AEAD operation rather than one scrypt run.
// A Vault is safe for use by one goroutine at a time; separate processes coordinate through
// the Storage's lock.
type Vault struct {
	store  Storage
	params Params
	salt   [saltSize]byte
	key    []byte
	_      [0]func() // incomparable: it holds a key
}

// Create writes a new state holding initial into s. It fails with ErrExists if s already
// holds one.
func Create(s Storage, passphrase []byte, params Params, initial []byte) (*Vault, error) {
	if err := params.check(); err != nil {
		return nil, err
	}
	if err := s.Init(); err != nil {
		return nil, err
	}
	v := &Vault{store: s, params: params}
	rand.Read(v.salt[:])
	key, err := deriveKey(passphrase, params, v.salt[:])
	if err != nil {
		return nil, err
	}
	v.key = key
	err = v.locked(func() error {
		if _, err := s.ReadState(); err == nil {
			return ErrExists
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return v.write(initial)
	})
	if err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// Open derives the key of the state in s from passphrase and checks that it decrypts. It
// fails with ErrNotFound when there is no state and ErrWrongPassphrase when it does not
// decrypt.
func Open(s Storage, passphrase []byte) (*Vault, error) {
	v := &Vault{store: s}
	err := v.locked(func() error {
		data, err := s.ReadState()
		if err != nil {
			return err
		}
		h, _, err := ParseHeader(data)
		if err != nil {
			return err
		}
		v.params, v.salt = h.Params, h.Salt
		if v.key, err = deriveKey(passphrase, h.Params, h.Salt[:]); err != nil {
			return err
		}
		_, err = v.decrypt(data)
		return err
	})
	if err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// Exists reports whether s holds a state (or something that fails to read as one: Create
// would refuse to replace it).
func Exists(s Storage) bool {
	_, err := s.ReadState()
	return !errors.Is(err, ErrNotFound)
}

// Read returns the current contents under the profile's lock.
func (v *Vault) Read() ([]byte, error) {
	var out []byte
	err := v.locked(func() error {
		var err error
		out, err = v.load()
		return err
	})
	return out, err
}

// Update runs one load-modify-save cycle under the profile's exclusive lock: fn gets the current
// contents and returns the new ones, which replace the file atomically. If fn fails nothing
// is written and its error is returned; if it returns the contents unchanged nothing is
// written either (saving an fsync on read-mostly cycles).
func (v *Vault) Update(fn func(current []byte) ([]byte, error)) error {
	return v.locked(func() error {
		cur, err := v.load()
		if err != nil {
			return err
		}
		next, err := fn(bytes.Clone(cur))
		if err != nil {
			return err
		}
		if bytes.Equal(next, cur) {
			return nil
		}
		return v.write(next)
	})
}

// Destroy removes the state and history under the lock; the Vault is closed afterwards.
func (v *Vault) Destroy() error {
	err := v.locked(v.store.Remove)
	v.Close()
	return err
}

// Close forgets the key.
func (v *Vault) Close() {
	clear(v.key)
	v.key = nil
}

func (v *Vault) load() ([]byte, error) {
	if v.key == nil {
		return nil, errors.New("vault: closed")
	}
	data, err := v.store.ReadState()
	if err != nil {
		return nil, err
	}
	return v.decrypt(data)
}

func (v *Vault) decrypt(data []byte) ([]byte, error) {
	h, ct, err := ParseHeader(data)
	if err != nil {
		return nil, err
	}
	if h.Params != v.params || h.Salt != v.salt {
		// Another process re-created the profile with a new salt; this key cannot open it.
		return nil, ErrWrongPassphrase
	}
	aead, err := chacha20poly1305.NewX(v.key)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	pt, err := aead.Open(nil, h.Nonce[:], ct, data[:headerSize])
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	return pt, nil
}

// write seals plaintext under a fresh random nonce (24 bytes: random nonces never collide in
// practice) and replaces the stored state.
func (v *Vault) write(plaintext []byte) error {
	if v.key == nil {
		return errors.New("vault: closed")
	}
	h := Header{Params: v.params, Salt: v.salt}
	rand.Read(h.Nonce[:])
	aead, err := chacha20poly1305.NewX(v.key)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	out := h.AppendBinary(make([]byte, 0, headerSize+len(plaintext)+aead.Overhead()))
	out = aead.Seal(out, h.Nonce[:], plaintext, out)
	if len(out) > MaxFileSize {
		return fmt.Errorf("vault: state of %d bytes exceeds %d", len(out), MaxFileSize)
	}
	return v.store.WriteState(out)
}

// locked runs fn holding the profile's exclusive lock.
func (v *Vault) locked(fn func() error) error {
	unlock, err := v.store.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// LockReceiver takes the profile's receiver lock without waiting, for as long as a process
// receives for the device: the server keeps one delivery stream per device and a second one
// replaces the first, so two receivers of one profile would end each other's streams. It
// fails with ErrReceiverRunning (naming the holder where the Storage can) when another
// process holds it. The lock is released by the returned function, or when the process ends.
func (v *Vault) LockReceiver() (unlock func(), err error) { return v.store.LockReceiver() }

func deriveKey(passphrase []byte, p Params, salt []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("vault: empty passphrase")
	}
	key, err := scrypt.Key(passphrase, salt, 1<<p.LogN, int(p.R), int(p.P), chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("vault: derive key: %w", err)
	}
	return key, nil
}
