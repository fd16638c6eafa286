package client

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Errors callers can test with errors.Is.
var (
	// ErrNoProfile reports a profile directory without a registered device.
	ErrNoProfile = errors.New("client: no profile (run register or link first)")
	// ErrProfileExists reports register or link into a directory that already holds a profile.
	ErrProfileExists = errors.New("client: a profile already exists")
	// ErrLinkPending reports an operation on a device whose link is not approved yet.
	ErrLinkPending = errors.New("client: this device is waiting for its link to be approved")
	// ErrLinkRejected reports a device link that an existing device rejected.
	ErrLinkRejected = errors.New("client: the device link was rejected")
	// ErrLinkExpired reports a device link that expired before anyone decided it.
	ErrLinkExpired = errors.New("client: the device link expired")
	// ErrSelf reports an attempt to message one's own account (copies to one's other devices
	// are sent automatically).
	ErrSelf = errors.New("client: cannot send to your own account")
	// ErrNoPreKeys reports a recipient device that has not uploaded prekeys yet, so no
	// session can be started with it.
	ErrNoPreKeys = errors.New("client: recipient device has no prekeys yet")
	// ErrNothingToTrust reports Trust on a contact without a pending identity change.
	ErrNothingToTrust = errors.New("client: no identity change to trust")
	// ErrUnknownContact reports a username this device has never talked to.
	ErrUnknownContact = errors.New("client: unknown contact")
	// ErrEmptyMessage reports a text message that is empty or only white space.
	ErrEmptyMessage = errors.New("client: empty message (nothing but white space)")
	// ErrBadText reports a text message that is too long or not UTF-8.
	ErrBadText = errors.New("client: text message refused")
	// ErrAlreadyListening reports Listen on a profile another process is already listening
	// on: the server keeps one delivery stream per device, so a second would end the first.
	// That process receives and acknowledges everything; History shows what it received.
	ErrAlreadyListening = errors.New("client: another listen is already receiving for this profile; its output shows new messages, and history shows past ones")
)

// IdentityChangedError reports that a contact's identity differs from what this device
// pinned on first use: a known device has a new identity key, or the username now belongs to
// another account. Sends to the contact fail with it until the user runs Trust after
// comparing safety numbers.
type IdentityChangedError struct {
	Username string
	// Devices lists the device ids whose key changed; empty when the whole account changed.
	Devices []uint32
	// AccountReplaced is set when the username now names a different account.
	AccountReplaced bool
}

func (e *IdentityChangedError) Error() string {
	what := fmt.Sprintf("device(s) %v", e.Devices)
	if e.AccountReplaced {
		what = "account (deleted and registered again)"
	}
	return fmt.Sprintf("client: SAFETY WARNING: %s's %s changed identity key since first contact; "+
		"compare safety numbers out of band, then run trust %s", e.Username, what, e.Username)
}

// Fingerprint is the short form of an identity public key that people compare when
// approving a device link: the first 16 bytes of its SHA-256, in hex groups of four.
func Fingerprint(identityKey []byte) string {
	sum := sha256.Sum256(identityKey)
	h := hex.EncodeToString(sum[:16])
	var b strings.Builder
	for i := 0; i < len(h); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h[i : i+4])
	}
	return b.String()
}
