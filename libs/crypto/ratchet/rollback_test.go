package ratchet

import (
	"bytes"
	"testing"
)

// TestRollbackDoesNotReuseKeystream restores a sender's state from an older copy (a backup, a
// crash before the newer state was saved) and encrypts a different plaintext under the message
// key already used. With key and nonce a function of the message key alone, the two bodies
// would share an AES-GCM keystream (their XOR is the plaintexts' XOR) and GHASH key; the random
// message nonce must make them independent.
func TestRollbackDoesNotReuseKeystream(t *testing.T) {
	bothModes(t, func(t *testing.T, cfg Config) {
		alice, bob := newTestPair(t, cfg, 60)
		saved := mustMarshal(t, alice)
		p1 := []byte("attack at dawn, bring the maps")
		p2 := []byte("retreat at dusk, burn the maps")
		m1 := mustEncrypt(t, alice, p1, nil)
		restored, err := Unmarshal(saved)
		if err != nil {
			t.Fatal(err)
		}
		m2 := mustEncrypt(t, restored, p2, nil)
		body := func(m []byte) []byte { return m[len(m)-len(p1)-aeadTagLen : len(m)-aeadTagLen] }
		c1, c2 := body(m1), body(m2)
		xorC, xorP := make([]byte, len(p1)), make([]byte, len(p1))
		for i := range p1 {
			xorC[i], xorP[i] = c1[i]^c2[i], p1[i]^p2[i]
		}
		if bytes.Equal(xorC, xorP) {
			t.Fatal("a restored state reused the AES-GCM key and nonce: c1 XOR c2 = p1 XOR p2")
		}
		// The receiver takes the first; the second reuses its message number, a replay.
		mustDecrypt(t, bob, m1, nil, p1)
		mustReject(t, bob, m2, nil, ErrDuplicate)
	})
}
