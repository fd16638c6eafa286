// Package ratchet implements the Double Ratchet of Signal's specification, with optional header
// encryption, over ECDH P-256, HKDF-SHA256, HMAC-SHA256 and AES-256-GCM
// (https://signal.org/docs/specifications/doubleratchet/).
//
// A session starts from the 32-byte shared secret of a PQXDH handshake: the initiator calls
// [NewInitiator] with the responder's signed prekey as the first remote ratchet key, the responder
// calls [NewResponder] with that prekey's private half. [State.Encrypt] and [State.Decrypt] then
// move whole wire messages; Decrypt accepts messages out of order (up to [Config.MaxSkip] per chain,
// [Config.MaxSkippedKeys] in total, oldest evicted), rejects replays with [ErrDuplicate] and leaves
// the state untouched on any error. Skipped message keys expire after [Config.MaxSkippedSteps]
// receiving DH ratchet steps or [Config.MaxSkippedAge], as the specification advises.
// [State.MarshalBinary] and [Unmarshal] persist a session; the encoding holds secrets and must
// itself be stored encrypted.
//
// Persist before you send. Encrypt advances the state; save the new state (MarshalBinary) durably
// before the ciphertext leaves the device, and never encrypt again from an older copy (a backup,
// a state reloaded after a crash that lost the newer one). A restored older state reuses message
// keys: its messages are refused by the peer as replays, and it would break forward secrecy for
// them. Each message carries a random 12-byte nonce that enters the derivation of its AES-256-GCM
// key and nonce, so even then no key and nonce pair repeats and no plaintext leaks; but the rule
// still holds.
//
// Constants, info strings and both wire formats are documented in docs/crypto/ratchet.md.
// A State is not safe for concurrent use.
package ratchet
