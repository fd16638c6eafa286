package ratchet

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
)

// Info strings of every HKDF in this package. Changing one changes every derived key: a new
// string means a new wire version.
const (
	// infoInit derives the first root key and both initial header keys from the PQXDH secret.
	infoInit = "Guardyn Ratchet v1 init"
	// infoRoot is KDF_RK: a root key and a DH output give the next root, chain and header keys.
	infoRoot = "Guardyn Ratchet v1 root"
	// infoMessage, followed by the message's random nonce, turns one message key into an
	// AES-256-GCM key and nonce (wire version 2; version 1 used "Guardyn Ratchet v1 message"
	// alone).
	infoMessage = "Guardyn Ratchet v2 message"
)

// KDF_CK inputs: Signal's recommended HMAC-SHA256 constants.
const (
	ckMessageInput = 0x01
	ckChainInput   = 0x02
)

const keyLen = 32

// digestStateCap holds a marshaled SHA-256 state (108 bytes in Go 1.26).
const digestStateCap = 128

// hmacKey is RFC 2104 HMAC-SHA256 with a 32-byte key, spelled out over crypto/sha256 because
// crypto/hmac.New allocates on every new key and the ratchet changes keys with every message
// (TestHMACMatchesStdlib checks it against crypto/hmac). Like crypto/hmac, it hashes the two key
// blocks (key⊕ipad, key⊕opad) once and saves the SHA-256 states, so several MACs under one key
// (KDF_CK's two, HKDF-Expand's blocks) do not hash them again. The states are saved through the
// digest's BinaryAppender; should that ever fail, sum hashes the key blocks again from key.
type hmacKey struct {
	key                [keyLen]byte
	inner, outer       [digestStateCap]byte
	innerLen, outerLen int // 0: no saved state
}

func (k *hmacKey) init(key *[keyLen]byte) {
	k.key = *key
	var pad [sha256.BlockSize]byte
	k.pad(&pad, 0x36)
	k.innerLen = saveState(&k.inner, &pad)
	k.pad(&pad, 0x5c)
	k.outerLen = saveState(&k.outer, &pad)
	clear(pad[:])
}

// pad sets pad to the key block key⊕fill (fill is 0x36 for ipad, 0x5c for opad), eight bytes
// at a time.
func (k *hmacKey) pad(pad *[sha256.BlockSize]byte, fill byte) {
	f := uint64(fill) * 0x0101010101010101
	for i := 0; i < keyLen; i += 8 {
		binary.LittleEndian.PutUint64(pad[i:], binary.LittleEndian.Uint64(k.key[i:])^f)
	}
	for i := keyLen; i < len(pad); i += 8 {
		binary.LittleEndian.PutUint64(pad[i:], f)
	}
}

// saveState hashes block and stores the resulting SHA-256 state in state, returning its length,
// or 0 if the digest cannot save it in place.
func saveState(state *[digestStateCap]byte, block *[sha256.BlockSize]byte) int {
	h := sha256.New()
	h.Write(block[:])
	a, ok := h.(encoding.BinaryAppender)
	if !ok {
		return 0
	}
	b, err := a.AppendBinary(state[:0])
	if err != nil || len(b) == 0 || len(b) > len(state) || &b[0] != &state[0] {
		return 0
	}
	return len(b)
}

// sum sets out to HMAC-SHA256(k, m1 || m2 || m3). The digest stays in this function (passing it
// on would move it to the heap).
func (k *hmacKey) sum(out *[keyLen]byte, m1, m2, m3 []byte) {
	var inner [sha256.Size]byte
	h := sha256.New()
	u, ok := h.(encoding.BinaryUnmarshaler)
	if !ok || k.innerLen == 0 || u.UnmarshalBinary(k.inner[:k.innerLen]) != nil {
		var pad [sha256.BlockSize]byte
		k.pad(&pad, 0x36)
		h.Reset()
		h.Write(pad[:])
		clear(pad[:])
	}
	h.Write(m1)
	h.Write(m2)
	h.Write(m3)
	h.Sum(inner[:0])
	if !ok || k.outerLen == 0 || u.UnmarshalBinary(k.outer[:k.outerLen]) != nil {
		var pad [sha256.BlockSize]byte
		k.pad(&pad, 0x5c)
		h.Reset()
		h.Write(pad[:])
		clear(pad[:])
	}
	h.Write(inner[:])
	h.Sum(out[:0])
	clear(inner[:])
}

func (k *hmacKey) wipe() {
	clear(k.key[:])
	clear(k.inner[:])
	clear(k.outer[:])
}

// hkdfSHA256 fills out (at most 255*32 bytes; here never more than 96) with RFC 5869
// HKDF-SHA256(salt, ikm, info). TestHKDFMatchesStdlib checks it against crypto/hkdf.
func hkdfSHA256(out []byte, salt *[keyLen]byte, ikm []byte, info string) {
	var extract hmacKey
	extract.init(salt)
	hkdfWithSalt(out, &extract, ikm, info, nil)
	extract.wipe()
}

// hkdfWithSalt is hkdfSHA256 with the salt's HMAC key already prepared and info || infoSuffix
// as the info (infoSuffix at most messageNonceLen bytes).
func hkdfWithSalt(out []byte, salt *hmacKey, ikm []byte, info string, infoSuffix []byte) {
	var prk, t [keyLen]byte
	salt.sum(&prk, ikm, nil, nil)
	var expand hmacKey
	expand.init(&prk)
	var infoBuf [32 + messageNonceLen]byte // every info string above and a message nonce fit
	n := copy(infoBuf[:], info)
	n += copy(infoBuf[n:], infoSuffix)
	infoBytes := infoBuf[:n]
	var counter [1]byte
	var prev []byte
	for len(out) > 0 {
		counter[0]++
		expand.sum(&t, prev, infoBytes, counter[:])
		n := copy(out, t[:])
		out = out[n:]
		prev = t[:]
	}
	expand.wipe()
	clear(prk[:])
	clear(t[:])
}

// rootKeys is the output of KDF_RK: Signal's KDF_RK_HE, whose first 64 bytes are exactly the
// plain KDF_RK (HKDF output is a prefix stream), so one function serves both modes.
type rootKeys struct {
	root, chain, nextHeader [keyLen]byte
}

// kdfRK is KDF_RK(rk, dh_out): HKDF-SHA256 with the root key as salt and the DH output as input.
func kdfRK(rk *[keyLen]byte, dhOut []byte) rootKeys {
	var buf [3 * keyLen]byte
	hkdfSHA256(buf[:], rk, dhOut, infoRoot)
	var k rootKeys
	copy(k.root[:], buf[0:32])
	copy(k.chain[:], buf[32:64])
	copy(k.nextHeader[:], buf[64:96])
	clear(buf[:])
	return k
}

// kdfCK is KDF_CK(ck): the message key is HMAC(ck, 0x01), the next chain key HMAC(ck, 0x02).
func kdfCK(ck *[keyLen]byte) (next, mk [keyLen]byte) {
	var k hmacKey
	k.init(ck)
	k.sum(&mk, []byte{ckMessageInput}, nil, nil)
	k.sum(&next, []byte{ckChainInput}, nil, nil)
	k.wipe()
	return next, mk
}

// initialKeys derives the first root key and the two initial header keys (Signal's shared_hka,
// shared_nhkb) from the PQXDH secret. The root key is derived rather than the secret itself so
// that no key serves two purposes.
func initialKeys(sharedKey []byte) (rk, hka, nhkb [keyLen]byte) {
	var zero [keyLen]byte
	var buf [3 * keyLen]byte
	hkdfSHA256(buf[:], &zero, sharedKey, infoInit)
	copy(rk[:], buf[0:32])
	copy(hka[:], buf[32:64])
	copy(nhkb[:], buf[64:96])
	clear(buf[:])
	return rk, hka, nhkb
}

// AES-256-GCM parameters of the message AEAD.
const (
	aeadKeyLen   = 32
	aeadNonceLen = 12
	aeadTagLen   = 16
)

// messageAEADKeys derives the AES-256-GCM key and nonce of one message from its message key and
// its random message nonce with HKDF-SHA256 (zero salt, as Signal's ENCRYPT does; info is
// infoMessage || nonce). Each message key encrypts one message; should a restored older state
// use one again, the fresh random nonce still gives a new key and nonce.
// zeroSalt is the HMAC key of the all-zero salt, prepared once per State.
func messageAEADKeys(zeroSalt *hmacKey, mk *[keyLen]byte, nonce []byte) (key [aeadKeyLen]byte, aeadNonce [aeadNonceLen]byte) {
	var buf [aeadKeyLen + aeadNonceLen]byte
	hkdfWithSalt(buf[:], zeroSalt, mk[:], infoMessage, nonce)
	copy(key[:], buf[:aeadKeyLen])
	copy(aeadNonce[:], buf[aeadKeyLen:])
	clear(buf[:])
	return key, aeadNonce
}
