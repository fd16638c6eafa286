// Package crypto groups Guardyn's end-to-end encryption libraries; it holds no code of its own.
//
// The server never sees plaintext: everything below runs on client devices.
//
//   - [github.com/guardyn/guardyn/libs/crypto/keys]: device identity keys, signed and one-time
//     prekeys (P-256 and ML-KEM-768), key bundles and the local prekey store.
//   - [github.com/guardyn/guardyn/libs/crypto/pqxdh]: the hybrid post-quantum key agreement
//     (Signal's PQXDH over P-256 and ML-KEM-768) that starts a 1:1 session.
//   - [github.com/guardyn/guardyn/libs/crypto/ratchet]: the Double Ratchet that encrypts every
//     message after the key agreement.
//   - [github.com/guardyn/guardyn/libs/crypto/session]: 1:1 sessions, joining pqxdh and ratchet
//     behind Initiate, Accept, Encrypt and Decrypt.
//   - [github.com/guardyn/guardyn/libs/crypto/envelope]: sealed-sender envelopes.
//   - [github.com/guardyn/guardyn/libs/crypto/safetynumber]: safety numbers for two identities.
//   - mls and sframe: group messaging and media frame encryption.
//
// Specification: https://signal.org/docs/specifications/pqxdh/ and docs/crypto/ in this repository.
package crypto
