package sframe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
)

// frameAEAD is one key's AEAD, built once when the key is installed so that
// protecting a frame allocates nothing. The associated data is passed in its
// two parts, header and metadata, so that implementations which can absorb
// it piecewise never copy it. Implementations are not safe for concurrent
// use: they keep scratch space.
type frameAEAD interface {
	seal(dst, nonce, plaintext, header, metadata []byte) []byte
	open(dst, nonce, ciphertext, header, metadata []byte) ([]byte, error)
}

// newFrameAEAD builds the AEAD of suite p from key (Nk bytes).
func newFrameAEAD(p suiteParams, key []byte) (frameAEAD, error) {
	if p.nka == p.nk {
		return newGCM(key)
	}
	return newCTRHMAC(p, key)
}

// gcmAEAD is AES-GCM from crypto/cipher. GCM needs its associated data in one
// piece, so header and metadata are joined in aad, which grows to the
// largest header+metadata seen and is then reused.
type gcmAEAD struct {
	aead cipher.AEAD
	aad  []byte
}

func newGCM(key []byte) (*gcmAEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sframe: aes key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sframe: gcm: %w", err)
	}
	return &gcmAEAD{aead: aead}, nil
}

func (g *gcmAEAD) joinAAD(header, metadata []byte) []byte {
	if len(metadata) == 0 {
		return header
	}
	g.aad = append(append(g.aad[:0], header...), metadata...)
	return g.aad
}

func (g *gcmAEAD) seal(dst, nonce, plaintext, header, metadata []byte) []byte {
	return g.aead.Seal(dst, nonce, plaintext, g.joinAAD(header, metadata))
}

func (g *gcmAEAD) open(dst, nonce, ciphertext, header, metadata []byte) ([]byte, error) {
	out, err := g.aead.Open(dst, nonce, ciphertext, g.joinAAD(header, metadata))
	if err != nil {
		return nil, ErrAuthentication
	}
	return out, nil
}

// ctrHMACAEAD is the AES-CTR plus truncated HMAC construction of
// [RFC 9605, Section 4.5.1]. The HMAC state is keyed once and Reset per frame.
// cipher.NewCTR has no way to change the IV of an existing stream, so this
// suite costs one small allocation per frame; GCM suites cost none.
//
// [RFC 9605, Section 4.5.1]: https://www.rfc-editor.org/rfc/rfc9605#section-4.5.1
type ctrHMACAEAD struct {
	block cipher.Block
	mac   hash.Hash
	nt    int
	iv    [aes.BlockSize]byte
	lens  [24]byte
	sum   [64]byte
}

func newCTRHMAC(p suiteParams, key []byte) (*ctrHMACAEAD, error) {
	block, err := aes.NewCipher(key[:p.nka])
	if err != nil {
		return nil, fmt.Errorf("sframe: aes key: %w", err)
	}
	return &ctrHMACAEAD{block: block, mac: hmac.New(p.newHash(), key[p.nka:]), nt: p.nt}, nil
}

// xorKeyStream runs AES-CTR over src into dst with IV nonce || 0x00000000.
func (c *ctrHMACAEAD) xorKeyStream(dst, src, nonce []byte) {
	copy(c.iv[:], nonce)
	clear(c.iv[len(nonce):])
	cipher.NewCTR(c.block, c.iv[:]).XORKeyStream(dst, src)
}

// tag computes HMAC(auth_key, len(aad) || len(ct) || Nt || nonce || aad || ct)
// truncated to Nt, with aad = header || metadata and lengths as 64-bit
// big-endian integers.
func (c *ctrHMACAEAD) tag(nonce, header, metadata, ct []byte) []byte {
	binary.BigEndian.PutUint64(c.lens[0:], uint64(len(header)+len(metadata)))
	binary.BigEndian.PutUint64(c.lens[8:], uint64(len(ct)))
	binary.BigEndian.PutUint64(c.lens[16:], uint64(c.nt))
	c.mac.Reset()
	c.mac.Write(c.lens[:])
	c.mac.Write(nonce)
	c.mac.Write(header)
	c.mac.Write(metadata)
	c.mac.Write(ct)
	return c.mac.Sum(c.sum[:0])[:c.nt]
}

func (c *ctrHMACAEAD) seal(dst, nonce, plaintext, header, metadata []byte) []byte {
	ret, out := sliceForAppend(dst, len(plaintext)+c.nt)
	ct := out[:len(plaintext)]
	c.xorKeyStream(ct, plaintext, nonce)
	copy(out[len(plaintext):], c.tag(nonce, header, metadata, ct))
	return ret
}

func (c *ctrHMACAEAD) open(dst, nonce, ciphertext, header, metadata []byte) ([]byte, error) {
	if len(ciphertext) < c.nt {
		return nil, ErrAuthentication
	}
	ct, tag := ciphertext[:len(ciphertext)-c.nt], ciphertext[len(ciphertext)-c.nt:]
	if subtle.ConstantTimeCompare(c.tag(nonce, header, metadata, ct), tag) != 1 {
		return nil, ErrAuthentication
	}
	ret, out := sliceForAppend(dst, len(ct))
	c.xorKeyStream(out, ct, nonce)
	return ret, nil
}

// sliceForAppend extends in by n bytes, reallocating only when its capacity
// is too small, and returns the whole slice and the new tail.
func sliceForAppend(in []byte, n int) (whole, tail []byte) {
	whole = append(in, make([]byte, n)...)
	return whole, whole[len(in):]
}
