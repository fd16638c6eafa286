// Package secrets seals Kubernetes Secrets with SOPS for age recipients and
// opens them again, with the getsops/sops/v3 library (the files are the same
// as the sops command writes: an operator may use either), and tells a sealed
// file from one left in clear. Only the values under data and stringData are
// encrypted, so a reviewer still sees which Secret and which keys a file
// holds; the MAC covers the whole file.
package secrets

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"
	"sigs.k8s.io/yaml"

	"github.com/guardyn/guardyn/infra/secrets/sealcheck"
)

// EncryptedRegex selects what SOPS encrypts in a Secret manifest.
const EncryptedRegex = "^(data|stringData)$"

// Seal encrypts a plain Secret manifest for the age recipients (age1…).
func Seal(plain []byte, recipients ...string) ([]byte, error) {
	if err := isSecret(plain); err != nil {
		return nil, err
	}
	if len(recipients) == 0 {
		return nil, errors.New("secrets: seal: no age recipient")
	}
	store := &sopsyaml.Store{}
	branches, err := store.LoadPlainFile(plain)
	if err != nil {
		return nil, fmt.Errorf("secrets: seal: %w", err)
	}
	var group sops.KeyGroup
	for _, r := range recipients {
		k, err := sopsage.MasterKeyFromRecipient(r)
		if err != nil {
			return nil, fmt.Errorf("secrets: seal: recipient %q: %w", r, err)
		}
		group = append(group, k)
	}
	tree := sops.Tree{
		Branches: branches,
		Metadata: sops.Metadata{
			KeyGroups:      []sops.KeyGroup{group},
			EncryptedRegex: EncryptedRegex,
			Version:        "3.13.3",
		},
	}
	dataKey := make([]byte, 32)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, err
	}
	for _, k := range group {
		if err := k.Encrypt(dataKey); err != nil {
			return nil, fmt.Errorf("secrets: seal: %w", err)
		}
	}
	cipher := aes.NewCipher()
	mac, err := tree.Encrypt(dataKey, cipher)
	if err != nil {
		return nil, fmt.Errorf("secrets: seal: %w", err)
	}
	tree.Metadata.LastModified = time.Now().UTC().Truncate(time.Second)
	tree.Metadata.MessageAuthenticationCode, err = cipher.Encrypt(mac, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil {
		return nil, fmt.Errorf("secrets: seal: %w", err)
	}
	return store.EmitEncryptedFile(tree)
}

// Opener opens sealed files with age identities.
type Opener struct {
	ids sopsage.ParsedIdentities
}

// NewOpener parses age identities (AGE-SECRET-KEY-1…, one a line, # comments).
func NewOpener(identities string) (*Opener, error) {
	var ids sopsage.ParsedIdentities
	if err := ids.Import(identities); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if len(ids) == 0 {
		return nil, errors.New("secrets: no age identity")
	}
	return &Opener{ids: ids}, nil
}

// Open decrypts a sealed file and checks its MAC; name is for errors.
func (o *Opener) Open(name string, data []byte) ([]byte, error) {
	if err := sealcheck.Check(data); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	store := &sopsyaml.Store{}
	tree, err := store.LoadEncryptedFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var dataKey []byte
	var errs []error
	for _, g := range tree.Metadata.KeyGroups {
		for _, k := range g {
			ak, ok := k.(*sopsage.MasterKey)
			if !ok {
				continue
			}
			o.ids.ApplyToMasterKey(ak)
			if dk, err := ak.Decrypt(); err == nil {
				dataKey = dk
				break
			} else {
				errs = append(errs, err)
			}
		}
	}
	if dataKey == nil {
		return nil, fmt.Errorf("%s: no age identity opens it: %w", name, errors.Join(errs...))
	}
	cipher := aes.NewCipher()
	mac, err := tree.Decrypt(dataKey, cipher)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	want, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil || want != mac {
		return nil, fmt.Errorf("%s: MAC mismatch: the file was changed after it was sealed", name)
	}
	return store.EmitPlainFile(tree.Branches)
}

func isSecret(plain []byte) error {
	var doc map[string]any
	if err := yaml.Unmarshal(plain, &doc); err != nil {
		return fmt.Errorf("secrets: not YAML: %w", err)
	}
	if doc["kind"] != "Secret" || doc["apiVersion"] != "v1" {
		return fmt.Errorf("secrets: not a v1 Secret (kind %v)", doc["kind"])
	}
	if _, ok := doc["sops"]; ok {
		return errors.New("secrets: already sealed")
	}
	return nil
}

// GenerateIdentity returns a new age identity and its recipient (for tests
// and for an operator's first key).
func GenerateIdentity() (identity, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", err
	}
	return id.String(), id.Recipient().String(), nil
}
