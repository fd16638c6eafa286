// Package ratchet implements the Double Ratchet of Signal's specification, with optional header
// encryption, over ECDH P-256, HKDF-SHA256, HMAC-SHA256 and AES-256-GCM
// (https://signal.org/docs/specifications/doubleratchet/).
//
// A session starts from the 32-byte shared secret of a PQXDH handshake: the initiator calls
// [NewInitiator] with the responder's signed prekey as the first remote ratchet key, the responder
// calls [NewResponder] with that prekey's private half. [State.Encrypt] and [State.Decrypt] then
// move whole wire messages; Decrypt accepts messages out of order (up to [Config.MaxSkip] per chain,
// [Config.MaxSkippedKeys] in total, oldest evicted), rejects replays with [ErrDuplicate] and leaves
// the state untouched on any error. [State.MarshalBinary] and [Unmarshal] persist a session; the
// encoding holds secrets and must itself be stored encrypted.
//
// Constants, info strings and both wire formats are documented in docs/crypto/ratchet.md.
// A State is not safe for concurrent use.
package ratchet
