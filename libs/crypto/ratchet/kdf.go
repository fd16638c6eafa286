package ratchet

import (
	"crypto/sha256"
	"encoding/binary"
)

// Info strings of every HKDF in this package. Changing one changes every derived key: a new
// string means a new wire version.
const (
	// infoInit derives the first root key and both initial header keys from the PQXDH secret.
	infoInit = "Guardyn Ratchet v1 init"
	// infoRoot is KDF_RK: a root key and a DH output give the next root, chain and header keys.
	infoRoot = "Guardyn Ratchet v1 root"
	// infoMessage turns one message key into an AES-256-GCM key and nonce.
	infoMessage = "Guardyn Ratchet v1 message"
)

// KDF_CK inputs: Signal's recommended HMAC-SHA256 constants.
const (
	ckMessageInput = 0x01
	ckChainInput   = 0x02
)

const keyLen = 32

// hmacSHA256 sets out to HMAC-SHA256(key, m1 || m2 || m3) for a 32-byte key. It is RFC 2104 over
// crypto/sha256, spelled out because crypto/hmac.New allocates on every new key and the ratchet
// changes keys with every message; TestHMACMatchesStdlib checks it against crypto/hmac.
func hmacSHA256(out, key *[keyLen]byte, m1, m2, m3 []byte) {
	var pad [sha256.BlockSize]byte
	for i := range pad {
		pad[i] = 0x36
	}
	for i, b := range key {
		pad[i] ^= b
	}
	var inner [sha256.Size]byte
	h := sha256.New()
	h.Write(pad[:])
	h.Write(m1)
	h.Write(m2)
	h.Write(m3)
	h.Sum(inner[:0])
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	h.Reset()
	h.Write(pad[:])
	h.Write(inner[:])
	h.Sum(out[:0])
	clear(pad[:])
	clear(inner[:])
}

// hkdfSHA256 fills out (at most 255*32 bytes; here never more than 96) with RFC 5869
// HKDF-SHA256(salt, ikm, info). TestHKDFMatchesStdlib checks it against crypto/hkdf.
func hkdfSHA256(out []byte, salt *[keyLen]byte, ikm []byte, info string) {
	var prk, t [keyLen]byte
	hmacSHA256(&prk, salt, ikm, nil, nil)
	var infoBuf [32]byte // every info string above fits
	infoBytes := infoBuf[:copy(infoBuf[:], info)]
	var counter [1]byte
	var prev []byte
	for len(out) > 0 {
		counter[0]++
		hmacSHA256(&t, &prk, prev, infoBytes, counter[:])
		n := copy(out, t[:])
		out = out[n:]
		prev = t[:]
	}
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
	hmacSHA256(&mk, ck, []byte{ckMessageInput}, nil, nil)
	hmacSHA256(&next, ck, []byte{ckChainInput}, nil, nil)
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

// messageAEADKeys derives the AES-256-GCM key and nonce of one message key with HKDF-SHA256
// (zero salt, as Signal's ENCRYPT does). The nonce is deterministic yet never repeats under a
// key: every message key, hence every AES key, encrypts exactly one message.
func messageAEADKeys(mk *[keyLen]byte) (key [aeadKeyLen]byte, nonce [aeadNonceLen]byte) {
	var zero [keyLen]byte
	var buf [aeadKeyLen + aeadNonceLen]byte
	hkdfSHA256(buf[:], &zero, mk[:], infoMessage)
	copy(key[:], buf[:aeadKeyLen])
	copy(nonce[:], buf[aeadKeyLen:])
	clear(buf[:])
	return key, nonce
}

func putUint32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }
