// Package sealcheck tells a SOPS-sealed Kubernetes Secret from one left in
// clear, without decrypting it: it needs no key and none of the SOPS key
// services, so it is cheap enough to run over every file of the repository.
package sealcheck

import (
	"errors"
	"fmt"
	"regexp"

	"sigs.k8s.io/yaml"
)

var encRE = regexp.MustCompile(`^ENC\[AES256_GCM,data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]+,tag:[A-Za-z0-9+/=]+,type:[a-z]+\]$`)

// Check reports whether a Secret manifest is SOPS-sealed: a sops
// section with a MAC and at least one age recipient, and every value under
// data and stringData encrypted. Anything else is a secret in clear.
func Check(data []byte) error {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	meta, _ := doc["sops"].(map[string]any)
	if meta == nil {
		return errors.New("not SOPS-encrypted: no sops section (a Secret in clear)")
	}
	if mac, _ := meta["mac"].(string); !encRE.MatchString(mac) {
		return errors.New("sops section without an encrypted MAC")
	}
	if ages, _ := meta["age"].([]any); len(ages) == 0 {
		return errors.New("sops section without an age recipient")
	}
	n := 0
	for _, field := range []string{"data", "stringData"} {
		vals, _ := doc[field].(map[string]any)
		for k, v := range vals {
			s, _ := v.(string)
			if !encRE.MatchString(s) {
				return fmt.Errorf("%s.%s is in clear", field, k)
			}
			n++
		}
	}
	if n == 0 {
		return errors.New("no data or stringData values")
	}
	return nil
}
