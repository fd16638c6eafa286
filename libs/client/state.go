package client

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/crypto/keys"
)

// stateVersion is the version of the JSON document inside the vault.
const stateVersion = 1

// Bounds on what the state keeps, so a long-lived profile does not grow without limit.
const (
	maxSeenIDs         = 4096 // recent server message ids remembered for deduplication
	maxSessionsPerPeer = 3    // sessions kept per peer device (simultaneous initiation)
)

// state is everything a profile keeps, serialized as JSON inside the encrypted vault. It
// is loaded and saved whole in every cycle: never cached between cycles, because another
// process may have changed it.
type state struct {
	Version    int    `json:"version"`
	Username   string `json:"username"`
	UserID     string `json:"user_id,omitempty"`
	DeviceID   uint32 `json:"device_id,omitempty"`
	DeviceName string `json:"device_name"`
	Identity   []byte `json:"identity"`
	PreKeys    []byte `json:"prekeys"`
	// TrustRoot is the auth service's sender-certificate key, pinned on first contact.
	TrustRoot []byte       `json:"trust_root"`
	Link      *pendingLink `json:"link,omitempty"`
	Tokens    tokens       `json:"tokens"`
	// Certificate is the current sender certificate and its expiry.
	Certificate []byte    `json:"certificate,omitempty"`
	CertExpires time.Time `json:"certificate_expires"`
	// Contacts maps usernames (including this account's own, for its other devices) to what
	// this device pinned about them.
	Contacts map[string]*contact `json:"contacts"`
	Seen     []string            `json:"seen"`
	// Uploads are the file uploads this device started and has not finished, with their
	// keys, so that a killed send-file resumes.
	Uploads []*pendingUpload `json:"uploads,omitempty"`
	// MLS holds this device's group-chat keys and groups (groups.go).
	MLS *mlsDevice `json:"mls,omitempty"`
	// StatusKey seals this account's presence status text; PresenceShared are the
	// usernames it was last shared with, so dropping one makes a new key.
	StatusKey      *statusKey `json:"status_key,omitempty"`
	PresenceShared []string   `json:"presence_shared,omitempty"`
	// newLog collects the history entries of this cycle; they are appended to the vault's
	// history file, not kept in the state, so a long history does not slow every save.
	newLog []LogEntry
	// now is the clock reading of this cycle, and discovered the devices pinned as new in
	// it (see pinNew); neither is saved.
	now        time.Time
	discovered []NewDevice
}

// statusKey is a presence status key (libs/crypto/presencestatus).
type statusKey struct {
	ID  uint32 `json:"id"`
	Key []byte `json:"key"`
}

// pendingLink is a device link waiting for approval.
type pendingLink struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

type tokens struct {
	Access         string    `json:"access,omitempty"`
	AccessExpires  time.Time `json:"access_expires"`
	Refresh        string    `json:"refresh,omitempty"`
	RefreshExpires time.Time `json:"refresh_expires"`
}

// contact is one account this device talks to, with trust on first use per device.
type contact struct {
	UserID  string                 `json:"user_id"`
	Devices map[uint32]*peerDevice `json:"devices"`
	// Pending is a changed identity (another account under the same username, or a new key
	// for a known device) that the user has not accepted with Trust. Sends refuse while it
	// is set.
	Pending *identitySnapshot `json:"pending,omitempty"`
	// StatusKeys are the contact's presence status keys by id, the newest maxStatusKeys.
	StatusKeys []statusKey `json:"status_keys,omitempty"`
}

// maxStatusKeys bounds the status keys kept per contact: a new one arrives when the contact
// drops someone from its presence list.
const maxStatusKeys = 4

func (c *contact) addStatusKey(k statusKey) {
	for _, have := range c.StatusKeys {
		if have.ID == k.ID {
			return
		}
	}
	c.StatusKeys = append(c.StatusKeys, k)
	if n := len(c.StatusKeys) - maxStatusKeys; n > 0 {
		c.StatusKeys = c.StatusKeys[n:]
	}
}

// peerDevice is one device of a contact. IdentityKey is nil for a device the server listed
// in a STALE_DEVICE_LIST answer whose key has not been fetched yet.
type peerDevice struct {
	IdentityKey []byte `json:"identity_key,omitempty"`
	// Sessions holds the encoded sessions with the device, the one to send on first.
	Sessions [][]byte `json:"sessions,omitempty"`
	// Unverified marks a device that appeared after first contact (or the last Trust), or
	// a device of one's own account that this device did not approve; Seen is when this
	// device learned of it. It changed the safety number, so it is warned about until
	// Trust.
	Unverified bool      `json:"unverified,omitempty"`
	Seen       time.Time `json:"seen,omitzero"`
}

// identitySnapshot is an account's user id and device keys as seen at one moment.
type identitySnapshot struct {
	UserID string            `json:"user_id"`
	Keys   map[uint32][]byte `json:"keys"`
}

// LogEntry is one message in the local history.
type LogEntry struct {
	ID string `json:"id"`
	// Peer is the other party of the conversation.
	Peer string `json:"peer"`
	// From is the sending account of a group message (Peer is "#" and the group's name).
	From string `json:"from,omitempty"`
	// Outgoing marks messages this account sent (from this device or another one).
	Outgoing bool         `json:"outgoing,omitempty"`
	Device   uint32       `json:"device"`
	Kind     content.Kind `json:"kind"`
	Body     string       `json:"body,omitempty"`
	Ref      string       `json:"ref,omitempty"`
	Sent     time.Time    `json:"sent"`
	// File is the shared file of a content.KindFile entry.
	File *content.File `json:"file,omitempty"`
}

func decodeState(b []byte) (*state, error) {
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("client: decode profile state: %w", err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("client: profile state version %d is not supported", s.Version)
	}
	if s.Contacts == nil {
		s.Contacts = make(map[string]*contact)
	}
	return &s, nil
}

func (s *state) encode() ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("client: encode profile state: %w", err)
	}
	return b, nil
}

func (s *state) identity() (*keys.Identity, error) {
	id, err := keys.ParseIdentity(s.Identity)
	if err != nil {
		return nil, fmt.Errorf("client: profile identity: %w", err)
	}
	return id, nil
}

func (s *state) preKeys() (*keys.PreKeyStore, error) {
	st, err := keys.ParsePreKeyStore(s.PreKeys)
	if err != nil {
		return nil, fmt.Errorf("client: profile prekeys: %w", err)
	}
	return st, nil
}

func (s *state) setPreKeys(st *keys.PreKeyStore) error {
	b, err := st.MarshalBinary()
	if err != nil {
		return fmt.Errorf("client: encode prekeys: %w", err)
	}
	clear(s.PreKeys)
	s.PreKeys = b
	return nil
}

// seen reports whether a server message id was processed already.
func (s *state) seen(id string) bool { return slices.Contains(s.Seen, id) }

func (s *state) markSeen(id string) {
	s.Seen = append(s.Seen, id)
	if n := len(s.Seen) - maxSeenIDs; n > 0 {
		s.Seen = slices.Delete(s.Seen, 0, n)
	}
}

func (s *state) appendLog(e LogEntry) { s.newLog = append(s.newLog, e) }

// contactByUserID finds the contact pinned under userID.
func (s *state) contactByUserID(userID string) (string, *contact) {
	for name, c := range s.Contacts {
		if c.UserID == userID {
			return name, c
		}
	}
	return "", nil
}

// sortedDevices returns the contact's device ids in ascending order.
func (c *contact) sortedDevices() []uint32 {
	ids := make([]uint32, 0, len(c.Devices))
	for id := range c.Devices {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
