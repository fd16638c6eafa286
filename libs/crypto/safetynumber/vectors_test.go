package safetynumber

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the current code")

type vectorParty struct {
	UserID       string   `json:"user_id"`
	IdentityKeys []string `json:"identity_keys"`
}

// vector is a frozen safety number for two parties, keys in SEC 1 uncompressed hex.
type vector struct {
	Name   string      `json:"name"`
	Local  vectorParty `json:"local"`
	Remote vectorParty `json:"remote"`
	Number string      `json:"number"`
}

const vectorsPath = "testdata/vectors.json"

func TestVectors(t *testing.T) {
	var vectors []vector
	if *update {
		vectors = freshVectors(t)
	} else {
		b, err := os.ReadFile(vectorsPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &vectors); err != nil {
			t.Fatalf("%s: %v", vectorsPath, err)
		}
		if len(vectors) == 0 {
			t.Fatalf("%s holds no vectors", vectorsPath)
		}
	}
	for i := range vectors {
		v := &vectors[i]
		local, remote := v.Local.party(t), v.Remote.party(t)
		n, err := Compute(local, remote)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if *update {
			v.Number = n.String()
		}
		if n.String() != v.Number {
			t.Errorf("%s:\n got %s\nwant %s", v.Name, n, v.Number)
		}
	}
	if *update {
		b, err := json.MarshalIndent(vectors, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (p vectorParty) party(t *testing.T) Party {
	t.Helper()
	out := Party{UserID: p.UserID}
	for _, k := range p.IdentityKeys {
		b, err := hex.DecodeString(k)
		if err != nil {
			t.Fatal(err)
		}
		out.IdentityKeys = append(out.IdentityKeys, b)
	}
	return out
}

// freshVectors lists the inputs of the frozen vectors; TestVectors fills in the numbers.
func freshVectors(t *testing.T) []vector {
	key := func(seed string) string { return hex.EncodeToString(identityKey(t, seed)) }
	alice := vectorParty{UserID: "alice", IdentityKeys: []string{key("alice/phone")}}
	bob := vectorParty{UserID: "bob", IdentityKeys: []string{key("bob/phone")}}
	aliceTwo := vectorParty{UserID: "alice", IdentityKeys: []string{key("alice/laptop"), key("alice/phone")}}
	bobThree := vectorParty{UserID: "0f6d3c1e-3b5a-4c1d-9a57-5d6a0b1f2e3c", IdentityKeys: []string{key("bob/tablet"), key("bob/phone"), key("bob/laptop")}}
	return []vector{
		{Name: "one device each", Local: alice, Remote: bob},
		{Name: "one device each, swapped", Local: bob, Remote: alice},
		{Name: "alice adds a laptop", Local: aliceTwo, Remote: bob},
		{Name: "several devices, unsorted keys, uuid user id", Local: bobThree, Remote: aliceTwo},
	}
}
