// Package presencestatus seals a presence status text ("in a meeting") so that only the
// account's contacts can read it: the presence server stores and forwards the sealed bytes
// and learns nothing but their (padded) size.
//
// Each account holds one 32-byte status [Key] with a 4-byte id. The client shares the key
// with the contacts it lets see its presence over its end-to-end encrypted sessions, and
// makes a new one (a new id) when it drops a contact, so that the dropped contact cannot
// read later texts. A sealed status is
//
//	version (1) || key id (4) || nonce (12) || AES-256-GCM(key, nonce, padded text, aad)
//
// with aad = "guardyn presence status v1" || user id, which binds it to the account that
// set it: a server replaying one account's sealed status as another's fails to open. The
// text is prefixed with its length and padded to a multiple of [PadBlock] bytes, so that
// its size leaks only its length class. See docs/crypto/presence.md.
package presencestatus

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Format constants.
const (
	// Version is the first byte of every sealed status.
	Version = 1
	// KeySize is the size of a status key.
	KeySize = 32
	// MaxTextBytes bounds a status text (UTF-8).
	MaxTextBytes = 250
	// PadBlock is the padding granularity of the text.
	PadBlock = 32

	headerSize = 1 + 4 + 12
	tagSize    = 16
	// MinSealedSize and MaxSealedSize bound a well-formed sealed status.
	MinSealedSize = headerSize + PadBlock + tagSize
	MaxSealedSize = headerSize + (2+MaxTextBytes+PadBlock-1)/PadBlock*PadBlock + tagSize
)

// Errors returned by this package; test with errors.Is.
var (
	ErrMalformed   = errors.New("presencestatus: malformed sealed status")
	ErrVersion     = errors.New("presencestatus: unknown sealed status version")
	ErrWrongKey    = errors.New("presencestatus: sealed under another key")
	ErrOpen        = errors.New("presencestatus: message authentication failed")
	ErrTextTooLong = errors.New("presencestatus: status text too long")
	ErrTextInvalid = errors.New("presencestatus: status text is not valid UTF-8")
)

const aadLabel = "guardyn presence status v1"

// Key is an account's status key. It is incomparable, because == is not constant time.
type Key struct {
	_   [0]func()
	id  uint32
	key [KeySize]byte
}

// GenerateKey returns a fresh key with a random id.
func GenerateKey() *Key {
	k := &Key{}
	rand.Read(k.key[:])
	var id [4]byte
	rand.Read(id[:])
	k.id = binary.BigEndian.Uint32(id[:])
	return k
}

// NewKey returns the key with the given id and bytes (as received from a contact).
func NewKey(id uint32, b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("presencestatus: key is %d bytes, want %d", len(b), KeySize)
	}
	k := &Key{id: id}
	copy(k.key[:], b)
	return k, nil
}

// ID is the key's id, carried in every sealed status so a contact picks the right key.
func (k *Key) ID() uint32 { return k.id }

// Bytes returns a copy of the key bytes, for sharing with contacts.
func (k *Key) Bytes() []byte { return append([]byte(nil), k.key[:]...) }

// Equal reports whether k and o are the same key, in constant time.
func (k *Key) Equal(o *Key) bool {
	return k.id == o.id && subtle.ConstantTimeCompare(k.key[:], o.key[:]) == 1
}

func (k *Key) aead() cipher.AEAD {
	b, err := aes.NewCipher(k.key[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

func aad(userID string) []byte { return append([]byte(aadLabel), userID...) }

// Seal seals text as userID's status under k.
func Seal(k *Key, userID, text string) ([]byte, error) {
	if len(text) > MaxTextBytes {
		return nil, fmt.Errorf("%w: %d bytes, max %d", ErrTextTooLong, len(text), MaxTextBytes)
	}
	if !utf8.ValidString(text) {
		return nil, ErrTextInvalid
	}
	padded := make([]byte, (2+len(text)+PadBlock-1)/PadBlock*PadBlock)
	binary.BigEndian.PutUint16(padded, uint16(len(text)))
	copy(padded[2:], text)
	out := make([]byte, headerSize, headerSize+len(padded)+tagSize)
	out[0] = Version
	binary.BigEndian.PutUint32(out[1:5], k.id)
	rand.Read(out[5:headerSize])
	return k.aead().Seal(out, out[5:headerSize], padded, aad(userID)), nil
}

// KeyID checks the framing of sealed (version, size, padding granularity) without a key and
// returns the id of the key it was sealed under. The presence server calls it to refuse
// what no client could open.
func KeyID(sealed []byte) (uint32, error) {
	if len(sealed) == 0 {
		return 0, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if sealed[0] != Version {
		return 0, fmt.Errorf("%w: %d", ErrVersion, sealed[0])
	}
	if len(sealed) < MinSealedSize || len(sealed) > MaxSealedSize || (len(sealed)-headerSize-tagSize)%PadBlock != 0 {
		return 0, fmt.Errorf("%w: %d bytes, want %d..%d in steps of %d", ErrMalformed, len(sealed), MinSealedSize, MaxSealedSize, PadBlock)
	}
	return binary.BigEndian.Uint32(sealed[1:5]), nil
}

// Open returns the text userID sealed under k.
func Open(k *Key, userID string, sealed []byte) (string, error) {
	id, err := KeyID(sealed)
	if err != nil {
		return "", err
	}
	if id != k.id {
		return "", fmt.Errorf("%w: key id %08x, have %08x", ErrWrongKey, id, k.id)
	}
	padded, err := k.aead().Open(nil, sealed[5:headerSize], sealed[headerSize:], aad(userID))
	if err != nil {
		return "", ErrOpen
	}
	n := int(binary.BigEndian.Uint16(padded))
	if n > MaxTextBytes || 2+n > len(padded) || len(padded)-(2+n) >= PadBlock {
		return "", fmt.Errorf("%w: text length %d in %d padded bytes", ErrMalformed, n, len(padded))
	}
	for _, b := range padded[2+n:] {
		if b != 0 {
			return "", fmt.Errorf("%w: non-zero padding", ErrMalformed)
		}
	}
	text := string(padded[2 : 2+n])
	if !utf8.ValidString(text) {
		return "", ErrTextInvalid
	}
	return text, nil
}
