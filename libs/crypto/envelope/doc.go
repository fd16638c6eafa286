// Package envelope seals a message so the server sees only the recipient device (Guardyn's
// sealed sender, after Signal's sealed sender v1); the spec is docs/crypto/envelope.md.
//
// The sender's identity travels inside the ciphertext, vouched for by a short-lived
// [SenderCertificate] that the auth service issues with an [Issuer] and that clients check against
// the auth service's pinned Ed25519 key, the trust root. Start with [Seal] on the sending device
// and [Open] on the receiving one.
//
// Construction, in short (all curves P-256, KDF HKDF-SHA-256, AEAD AES-256-GCM):
//
//  1. A fresh ephemeral key e does ECDH with the recipient identity key R. The derived
//     static key encrypts the sender identity public key S, hiding it from the server.
//  2. The sender identity key does ECDH with R (static-static). Mixed with the chain key of step 1,
//     it derives the message key that encrypts the padded inner plaintext: certificate, content
//     type and content. Only the holder of S's private key (or R's) can produce that ciphertext.
//  3. The recipient decrypts both layers, verifies the certificate, and checks that the
//     certificate's identity key is the S that did the ECDH ([ErrSenderKeyMismatch] otherwise).
//
// The recipient identity key and device id are bound into both AEADs' associated data, so an
// envelope cannot be redirected to another device. The envelope's total length is always one of
// ten bucket sizes (powers of two from [MinSize] to [MaxSize]) so lengths leak little.
//
// Decoders are strict: unknown versions fail with [ErrUnsupportedVersion], bad encodings with
// [ErrMalformed], and envelopes over [MaxSize] with [ErrTooLarge] before any work is done.
//
// Specification: docs/crypto/envelope.md; reference design
// https://signal.org/blog/sealed-sender/.
package envelope
