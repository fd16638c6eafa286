package notification

import "crypto/ecdh"

// checkP256 reports whether b is an uncompressed P-256 point on the curve, as RFC 8291
// requires of a subscription's p256dh key.
func checkP256(b []byte) error {
	_, err := ecdh.P256().NewPublicKey(b)
	return err
}
