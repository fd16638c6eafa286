package envelope

import "errors"

// Errors callers can test with errors.Is. Returned errors wrap one of these with detail.
var (
	// ErrMalformed reports bytes that do not decode as an envelope, inner plaintext or certificate.
	ErrMalformed = errors.New("envelope: malformed")
	// ErrUnsupportedVersion reports an envelope or certificate version this code does not know.
	ErrUnsupportedVersion = errors.New("envelope: unsupported version")
	// ErrTooLarge reports an envelope over MaxSize or content over MaxContentSize.
	ErrTooLarge = errors.New("envelope: too large")
	// ErrDecrypt reports an envelope that fails authentication: tampered, or not sealed to this
	// recipient identity and device id.
	ErrDecrypt = errors.New("envelope: decryption failed")
	// ErrInvalidKey reports a caller-supplied key that is missing, on the wrong curve or the
	// wrong size.
	ErrInvalidKey = errors.New("envelope: invalid key")
	// ErrInvalidCertificate reports certificate fields that cannot be issued (empty or oversized
	// user id, invalid lifetime).
	ErrInvalidCertificate = errors.New("envelope: invalid certificate fields")
	// ErrUnsupportedContentType reports a content type this code does not know.
	ErrUnsupportedContentType = errors.New("envelope: unsupported content type")
	// ErrUnknownIssuer reports a certificate whose issuer key id is not the trust root's KeyID;
	// a client may refetch the trust root.
	ErrUnknownIssuer = errors.New("envelope: certificate from unknown issuer")
	// ErrCertificateSignature reports a certificate whose signature does not verify.
	ErrCertificateSignature = errors.New("envelope: bad certificate signature")
	// ErrCertificateExpired reports a certificate past its expiry.
	ErrCertificateExpired = errors.New("envelope: certificate expired")
	// ErrSenderKeyMismatch reports a certificate whose identity key is not the key that sealed
	// the envelope.
	ErrSenderKeyMismatch = errors.New("envelope: certificate identity key does not match sender")
)
