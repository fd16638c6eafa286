package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/mls"
)

// A device's MLS leaf carries a basic credential that binds the leaf's signature key to the
// device: its account, device id and identity key, with a signature by that identity key
// over the MLS signature key. Members check the signature when a leaf enters the group, and
// compare the identity key with the one they pinned for the device (the safety number), so
// the server cannot slip a leaf of its own into a group under a member's name without the
// members seeing it.
//
//	"GMC1" || u8 len(user id) || user id || u32 device id || identity key (65) || signature

// contextMLSCredential signs the statement of an MLS credential.
const contextMLSCredential keys.Context = "mls-credential"

// groupSuite is the MLS cipher suite of the groups this device creates and of its key
// packages: X-Wing (ML-KEM-768 + X25519), so that a recorded group cannot be decrypted by
// a future quantum computer. Its MLS signatures are Ed25519; the credential binding that
// key to the device is signed by the device's P-256 identity key as before.
const groupSuite = mls.DefaultCipherSuite

// legacyGroupSuite is the suite of MLS identities made before groupSuite was X-Wing
// (a stored mlsDevice without a suite).
const legacyGroupSuite = mls.P256AES128GCMSHA256P256

const credentialMagic = "GMC1"

// credentialBasic is the MLS basic credential type (RFC 9420 §5.3).
const credentialBasic = 1

// errBadCredential wraps every refusal of a credential.
var errBadCredential = errors.New("client: bad MLS credential")

// mlsCredential is a parsed credential.
type mlsCredential struct {
	UserID      string
	DeviceID    uint32
	IdentityKey []byte
	Signature   []byte
}

func credentialStatement(userID string, deviceID uint32, sigKey []byte) []byte {
	b := append([]byte(credentialMagic), byte(len(userID)))
	b = append(b, userID...)
	b = binary.BigEndian.AppendUint32(b, deviceID)
	return append(b, sigKey...)
}

// newMLSIdentity makes a fresh MLS signature key for this device and its credential.
func newMLSIdentity(id *keys.Identity, userID string, deviceID uint32) (sigPriv, credential []byte, err error) {
	if len(userID) == 0 || len(userID) > 255 {
		return nil, nil, fmt.Errorf("client: user id of %d bytes cannot go in a credential", len(userID))
	}
	tmp, err := mls.NewIdentity(groupSuite, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("client: MLS signature key: %w", err)
	}
	sig, err := id.Sign(contextMLSCredential, credentialStatement(userID, deviceID, tmp.SignaturePublicKey()))
	if err != nil {
		return nil, nil, fmt.Errorf("client: sign MLS credential: %w", err)
	}
	cred := append([]byte(credentialMagic), byte(len(userID)))
	cred = append(cred, userID...)
	cred = binary.BigEndian.AppendUint32(cred, deviceID)
	cred = append(cred, id.Public().Bytes()...)
	return tmp.SignaturePrivateKey(), append(cred, sig...), nil
}

// parseCredential decodes a credential identity; it does not verify the signature.
func parseCredential(b []byte) (*mlsCredential, error) {
	rest, ok := bytes.CutPrefix(b, []byte(credentialMagic))
	if !ok {
		return nil, fmt.Errorf("%w: no %q prefix", errBadCredential, credentialMagic)
	}
	if len(rest) < 1 {
		return nil, fmt.Errorf("%w: truncated", errBadCredential)
	}
	n := int(rest[0])
	rest = rest[1:]
	if n == 0 || len(rest) < n+4+keys.PublicKeySize+1 {
		return nil, fmt.Errorf("%w: %d bytes do not hold a %d-byte user id, device id, identity key and signature", errBadCredential, len(rest), n)
	}
	c := &mlsCredential{UserID: string(rest[:n]), DeviceID: binary.BigEndian.Uint32(rest[n:])}
	rest = rest[n+4:]
	c.IdentityKey = bytes.Clone(rest[:keys.PublicKeySize])
	c.Signature = bytes.Clone(rest[keys.PublicKeySize:])
	if c.DeviceID == 0 {
		return nil, fmt.Errorf("%w: device id 0", errBadCredential)
	}
	return c, nil
}

// verify checks that the identity key signed sigKey for the credential's device.
func (c *mlsCredential) verify(sigKey []byte) error {
	ik, err := keys.ParseIdentityKey(c.IdentityKey)
	if err != nil {
		return fmt.Errorf("%w: identity key: %w", errBadCredential, err)
	}
	if err := ik.Verify(contextMLSCredential, credentialStatement(c.UserID, c.DeviceID, sigKey), c.Signature); err != nil {
		return fmt.Errorf("%w: signature of %s device %d: %w", errBadCredential, c.UserID, c.DeviceID, err)
	}
	return nil
}

// credentialValidator is the Authentication Service of this device's groups: a leaf must
// carry a well-formed credential signed by its identity key, and that key must not
// contradict one this device pinned for the same device (a changed key is refused; a new
// one is shown as unverified by GroupMembers).
func (s *state) credentialValidator() mls.CredentialValidator {
	return func(ctype uint16, identity []byte, _ [][]byte, sigKey []byte) error {
		if ctype != credentialBasic {
			return fmt.Errorf("%w: credential type %d", errBadCredential, ctype)
		}
		c, err := parseCredential(identity)
		if err != nil {
			return err
		}
		if err := c.verify(sigKey); err != nil {
			return err
		}
		if c.UserID == s.UserID && c.DeviceID == s.DeviceID {
			id, err := s.identity()
			if err != nil {
				return err
			}
			if !bytes.Equal(id.Public().Bytes(), c.IdentityKey) {
				return fmt.Errorf("%w: a leaf claims this device with another identity key", errBadCredential)
			}
			return nil
		}
		if _, ct := s.contactByUserID(c.UserID); ct != nil {
			if d := ct.Devices[c.DeviceID]; d != nil && d.IdentityKey != nil && !bytes.Equal(d.IdentityKey, c.IdentityKey) {
				return fmt.Errorf("%w: %s device %d has identity key %s, not the pinned %s", errBadCredential, c.UserID, c.DeviceID, Fingerprint(c.IdentityKey), Fingerprint(d.IdentityKey))
			}
		}
		return nil
	}
}
