package ratchet

import (
	"crypto/cipher"
	"crypto/ecdh"
	"fmt"
	"math"
)

// pending is the outcome of a Decrypt before it authenticates: the next core and the keys to add
// to the skipped store. commit applies it; dropping it leaves the State untouched.
type pending struct {
	c       core
	skipped []skippedKey
}

// recvChain names the current receiving chain in the skipped-key store.
func (c *core) recvChain(headerEncryption bool) chainID {
	if headerEncryption {
		return headerKeyChain(&c.hkr)
	}
	return chainID(c.dhr)
}

// Decrypt authenticates and decrypts a wire message made by the peer's Encrypt with the same ad
// and appends the plaintext to dst (Signal's RatchetDecrypt and RatchetDecryptHE). On any error
// the State is unchanged. message must not overlap dst's spare capacity.
func (s *State) Decrypt(dst, message, ad []byte) ([]byte, error) {
	he := s.cfg.HeaderEncryption
	if err := checkVersion(message, he); err != nil {
		return nil, err
	}
	pl := prefixLen(he)
	if len(message) < pl+aeadTagLen {
		return nil, fmt.Errorf("message of %d bytes, want at least %d: %w", len(message), pl+aeadTagLen, ErrMalformed)
	}
	prefix, body := message[:pl], message[pl:]
	if he {
		return s.decryptEncryptedHeader(dst, prefix, body, ad)
	}
	return s.decryptPlainHeader(dst, prefix, body, ad)
}

func (s *State) decryptPlainHeader(dst, prefix, body, ad []byte) ([]byte, error) {
	h := parseHeader(prefix[1+messageNonceLen:])
	id := chainID(h.dh)
	c := &s.c
	switch {
	case c.hasDHr && h.dh == c.dhr:
		return s.decryptInChain(dst, h, &id, prefix, body, ad)
	case c.hasPrev && id == c.prev:
		return s.decryptSkipped(dst, &id, h.n, prefix, body, ad)
	}
	if s.skipped.find(&id, h.n) >= 0 {
		return s.decryptSkipped(dst, &id, h.n, prefix, body, ad)
	}
	return s.decryptNewChain(dst, h, prefix, body, ad)
}

func (s *State) decryptEncryptedHeader(dst, prefix, body, ad []byte) ([]byte, error) {
	c := &s.c
	var current *chainID
	if c.hasHKr {
		id := headerKeyChain(&c.hkr)
		current = &id
		if h, ok := s.openHeader(&c.hkr, &s.recvHeader, prefix); ok {
			return s.decryptInChain(dst, h, current, prefix, body, ad)
		}
	}
	// Older chains: those with skipped keys, and the previous one, whose replays we want to name.
	chains := s.skipped.chains(current)
	if c.hasPrev {
		chains = append(chains, c.prev)
	}
	for i := range chains {
		hk := (*[keyLen]byte)(chains[i][:keyLen])
		if h, ok := s.openHeader(hk, nil, prefix); ok {
			return s.decryptSkipped(dst, &chains[i], h.n, prefix, body, ad)
		}
	}
	if h, ok := s.openHeader(&c.nhkr, nil, prefix); ok {
		return s.decryptNewChain(dst, h, prefix, body, ad)
	}
	return nil, fmt.Errorf("no header key opens the header: %w", ErrDecrypt)
}

// openHeader is HDECRYPT: it reports whether hk opens the encrypted header in prefix. cache, if
// not nil, keeps hk's AEAD for the next message.
func (s *State) openHeader(hk *[keyLen]byte, cache *headerAEAD, prefix []byte) (header, bool) {
	var aead cipher.AEAD
	var err error
	if cache != nil {
		aead, err = cache.get(hk)
	} else {
		aead, err = newAESGCM(hk[:])
	}
	if err != nil {
		return header{}, false
	}
	nonce := prefix[1 : 1+messageNonceLen]
	plain, err := aead.Open(s.headerBuf[:0], nonce, prefix[1+messageNonceLen:], prefix[:1])
	if err != nil {
		return header{}, false
	}
	return parseHeader(plain), true
}

// decryptInChain handles a message of the current receiving chain.
func (s *State) decryptInChain(dst []byte, h header, id *chainID, prefix, body, ad []byte) ([]byte, error) {
	if h.n < s.c.nr {
		return s.decryptSkipped(dst, id, h.n, prefix, body, ad)
	}
	p := pending{c: s.c}
	return s.receive(dst, &p, h.n, prefix, body, ad)
}

// decryptNewChain performs Signal's DH ratchet step for a header announcing a new remote key.
func (s *State) decryptNewChain(dst []byte, h header, prefix, body, ad []byte) ([]byte, error) {
	p := pending{c: s.c}
	if err := s.skipTo(&p, h.pn); err != nil {
		return nil, err
	}
	if err := s.dhRatchet(&p.c, &h.dh); err != nil {
		return nil, err
	}
	return s.receive(dst, &p, h.n, prefix, body, ad)
}

// decryptSkipped opens a message whose key should be in the skipped store.
func (s *State) decryptSkipped(dst []byte, id *chainID, n uint32, prefix, body, ad []byte) ([]byte, error) {
	i := s.skipped.find(id, n)
	if i < 0 {
		return nil, fmt.Errorf("message %d: %w", n, ErrDuplicate)
	}
	if s.skipped.keys[i].expired(&s.cfg, s.c.steps, s.now().Unix()) {
		return nil, fmt.Errorf("message %d: its skipped key expired: %w", n, ErrDuplicate)
	}
	out, err := s.openBody(dst, &s.skipped.keys[i].mk, prefix[1:1+messageNonceLen], body, s.associatedData(ad, prefix))
	if err != nil {
		return nil, fmt.Errorf("skipped message %d: %w", n, err)
	}
	s.skipped.remove(i)
	return out, nil
}

// receive skips p's receiving chain to message n, opens the message with its key and, if it
// authenticates, commits p.
func (s *State) receive(dst []byte, p *pending, n uint32, prefix, body, ad []byte) ([]byte, error) {
	if !p.c.hasCKr {
		return nil, fmt.Errorf("message %d without a receiving chain: %w", n, ErrDecrypt)
	}
	if n == math.MaxUint32 { // Encrypt never numbers a message so; accepting it would wrap Nr
		return nil, fmt.Errorf("message number %d: %w", n, ErrCounterExhausted)
	}
	if err := s.skipTo(p, n); err != nil {
		return nil, err
	}
	next, mk := kdfCK(&p.c.ckr)
	out, err := s.openBody(dst, &mk, prefix[1:1+messageNonceLen], body, s.associatedData(ad, prefix))
	clear(mk[:])
	if err != nil {
		clear(next[:])
		return nil, fmt.Errorf("message %d: %w", n, err)
	}
	p.c.ckr = next
	p.c.nr++
	s.commit(p)
	return out, nil
}

func (s *State) commit(p *pending) {
	s.c = p.c
	clear(p.c.rk[:])
	clear(p.c.ckr[:])
	clear(p.c.cks[:])
	if len(p.skipped) > 0 {
		s.skipped.add(p.skipped, s.cfg.MaxSkippedKeys)
		clear(p.skipped)
	}
	s.expireSkipped()
}

// skipTo is SkipMessageKeys: it derives and queues the keys of messages nr..until-1 of the
// receiving chain, refusing more than MaxSkip.
func (s *State) skipTo(p *pending, until uint32) error {
	c := &p.c
	if uint64(until) > uint64(c.nr)+uint64(s.cfg.MaxSkip) {
		return fmt.Errorf("message %d would skip %d keys, more than %d: %w", until, uint64(until)-uint64(c.nr), s.cfg.MaxSkip, ErrTooManySkipped)
	}
	if !c.hasCKr || c.nr >= until {
		return nil
	}
	id := c.recvChain(s.cfg.HeaderEncryption)
	now := s.now().Unix()
	for c.nr < until {
		next, mk := kdfCK(&c.ckr)
		p.skipped = append(p.skipped, skippedKey{chain: id, n: c.nr, step: c.steps, stored: now, mk: mk})
		clear(mk[:])
		c.ckr = next
		c.nr++
	}
	return nil
}

// dhRatchet is Signal's DHRatchet (DHRatchetHE with header encryption) on a pending core.
func (s *State) dhRatchet(c *core, remote *[pubKeyLen]byte) error {
	pub, err := ecdh.P256().NewPublicKey(remote[:])
	if err != nil {
		return fmt.Errorf("remote ratchet key: %w", ErrMalformed)
	}
	he := s.cfg.HeaderEncryption
	if c.hasCKr {
		c.prev, c.hasPrev = c.recvChain(he), true
	}
	c.pn, c.ns, c.nr = c.ns, 0, 0
	if c.steps < math.MaxUint32 { // saturates: by then every older skipped key has expired
		c.steps++
	}
	if he {
		c.hks, c.hasHKs = c.nhks, true
		c.hkr, c.hasHKr = c.nhkr, true
	}
	c.dhr, c.hasDHr = *remote, true

	dh, err := c.dhs.ECDH(pub)
	if err != nil {
		return fmt.Errorf("receiving dh: %w", ErrMalformed)
	}
	k := kdfRK(&c.rk, dh)
	clear(dh)
	c.rk, c.ckr, c.nhkr, c.hasCKr = k.root, k.chain, k.nextHeader, true

	if c.dhs, err = s.generateKey(); err != nil {
		return err
	}
	copy(c.dhsPub[:], c.dhs.PublicKey().Bytes())
	if dh, err = c.dhs.ECDH(pub); err != nil {
		return fmt.Errorf("sending dh: %w", ErrMalformed)
	}
	k = kdfRK(&c.rk, dh)
	clear(dh)
	c.rk, c.cks, c.nhks, c.hasCKs = k.root, k.chain, k.nextHeader, true
	clear(k.root[:])
	clear(k.chain[:])
	clear(k.nextHeader[:])
	return nil
}
