package content

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/guardyn/guardyn/libs/crypto/filecrypt"
)

// KindFile shares an encrypted file: the message carries what a recipient needs to fetch,
// check and decrypt it from the media service (docs/crypto/files.md).
const KindFile Kind = "file"

// Limits of a file reference.
const (
	// MaxFileNameSize bounds a file name in bytes.
	MaxFileNameSize = 255
	// MaxCapabilitySize is the API's bound on a capability token.
	MaxCapabilitySize = 1024
)

// File is a shared file: the blob's id and ciphertext hash and size, its key, the name the
// sender gave it and a capability to download it. Only the end-to-end encrypted message
// carries the key, so the server holding the blob cannot read it.
type File struct {
	Blob       string `json:"blob"`
	Key        []byte `json:"key"`
	SHA256     []byte `json:"sha256"`
	Size       int64  `json:"size"`
	Name       string `json:"name"`
	Capability []byte `json:"cap,omitempty"`
}

// PlaintextSize returns the size of the decrypted file.
func (f *File) PlaintextSize() int64 {
	n, _ := filecrypt.PlaintextSize(f.Size)
	return n
}

// fileWire is the JSON form of a File; bytes travel in base64, the hash in hex.
type fileWire struct {
	Blob       string `json:"blob"`
	Key        string `json:"key"`
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	Name       string `json:"name"`
	Capability string `json:"cap,omitempty"`
}

func (f *File) wire() *fileWire {
	return &fileWire{
		Blob: f.Blob, Key: base64.StdEncoding.EncodeToString(f.Key), SHA256: hex.EncodeToString(f.SHA256),
		Size: f.Size, Name: f.Name, Capability: base64.StdEncoding.EncodeToString(f.Capability),
	}
}

// file decodes and checks w: every field within its bounds, the blob id the hash of the
// ciphertext, the size one that a plaintext encrypts to, and a name safe to write as a
// file in a directory of the recipient's choice.
func (w *fileWire) file() (*File, error) {
	bad := func(what string) (*File, error) { return nil, fmt.Errorf("%w: file %s", ErrMalformed, what) }
	f := &File{Blob: w.Blob, Size: w.Size, Name: w.Name}
	var err error
	if f.Key, err = base64.StdEncoding.DecodeString(w.Key); err != nil || len(f.Key) != filecrypt.KeySize {
		return bad("key")
	}
	if f.SHA256, err = hex.DecodeString(w.SHA256); err != nil || len(f.SHA256) != 32 || w.SHA256 != strings.ToLower(w.SHA256) {
		return bad("hash")
	}
	if f.Blob != w.SHA256 {
		return bad("blob id (not the ciphertext hash)")
	}
	if _, err := filecrypt.PlaintextSize(f.Size); err != nil || f.Size > 1<<40 {
		return bad("size")
	}
	if len(w.Capability) > base64.StdEncoding.EncodedLen(MaxCapabilitySize) {
		return bad("capability")
	}
	if f.Capability, err = base64.StdEncoding.DecodeString(w.Capability); err != nil {
		return bad("capability")
	}
	if !SafeFileName(f.Name) {
		return bad("name")
	}
	return f, nil
}

// SafeFileName reports whether name can be written as a file inside a directory without
// leaving it or hiding: 1 to MaxFileNameSize bytes of UTF-8, no path separator, no control
// character, not "." or "..", not starting with a dot.
func SafeFileName(name string) bool {
	if name == "" || len(name) > MaxFileNameSize || !utf8.ValidString(name) || name[0] == '.' {
		return false
	}
	for _, r := range name {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// MaxGroupCapabilities bounds the capabilities of a group file reference: one per member
// account.
const MaxGroupCapabilities = 1024

// maxAccountID bounds an account id naming a capability's audience (the media API's
// limit on a name).
const maxAccountID = 255

// GroupFile is the file reference of a group message. A capability names one audience
// account, so the sender makes one per member account (user id) of the group when it
// sends: a device added to the group later finds no capability for its account and
// cannot fetch the file with anyone else's.
type GroupFile struct {
	// File is the reference without a capability.
	File *File
	// Capabilities maps each member account's user id to its capability.
	Capabilities map[string][]byte
}

// groupFileWire is the JSON form of a GroupFile: the file's fields and the capabilities
// in base64 by user id.
type groupFileWire struct {
	fileWire
	Caps map[string]string `json:"caps"`
}

// For returns the file with the capability of account userID (none when the sender
// made none for it: such a reference can be fetched only by the blob's owner).
func (g *GroupFile) For(userID string) *File {
	f := *g.File
	f.Capability = g.Capabilities[userID]
	return &f
}

// MarshalJSON encodes g with the same checks as UnmarshalJSON.
func (g *GroupFile) MarshalJSON() ([]byte, error) {
	w := groupFileWire{fileWire: *g.File.wire(), Caps: make(map[string]string, len(g.Capabilities))}
	for id, c := range g.Capabilities {
		w.Caps[id] = base64.StdEncoding.EncodeToString(c)
	}
	if _, err := w.groupFile(); err != nil {
		return nil, err
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes and checks a group file reference: the file as a 1:1 reference
// is checked, no capability outside the map, at most MaxGroupCapabilities of them, each
// under a non-empty account id of at most 255 bytes and within MaxCapabilitySize.
func (g *GroupFile) UnmarshalJSON(b []byte) error {
	var w groupFileWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: group file: %v", ErrMalformed, err)
	}
	got, err := w.groupFile()
	if err != nil {
		return err
	}
	*g = *got
	return nil
}

func (w *groupFileWire) groupFile() (*GroupFile, error) {
	bad := func(what string) (*GroupFile, error) {
		return nil, fmt.Errorf("%w: group file %s", ErrMalformed, what)
	}
	if w.Capability != "" {
		return bad("capability outside the per-account map")
	}
	if len(w.Caps) > MaxGroupCapabilities {
		return bad("capabilities (too many)")
	}
	f, err := w.fileWire.file()
	if err != nil {
		return nil, err
	}
	f.Capability = nil
	g := &GroupFile{File: f, Capabilities: make(map[string][]byte, len(w.Caps))}
	for id, c := range w.Caps {
		if id == "" || len(id) > maxAccountID || !utf8.ValidString(id) || len(c) > base64.StdEncoding.EncodedLen(MaxCapabilitySize) {
			return bad("capability")
		}
		if g.Capabilities[id], err = base64.StdEncoding.DecodeString(c); err != nil || len(g.Capabilities[id]) == 0 {
			return bad("capability")
		}
	}
	return g, nil
}
