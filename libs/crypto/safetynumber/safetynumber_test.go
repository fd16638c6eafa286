package safetynumber

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// identityKey derives a repeatable SEC 1 P-256 public key: SHA-256(seed || counter) as the
// scalar, retried on the rare invalid one.
func identityKey(t testing.TB, seed string) []byte {
	t.Helper()
	for counter := uint32(0); counter < 16; counter++ {
		h := sha256.Sum256(binary.BigEndian.AppendUint32([]byte(seed), counter))
		if k, err := ecdh.P256().NewPrivateKey(h[:]); err == nil {
			return k.PublicKey().Bytes()
		}
	}
	t.Fatalf("no valid P-256 scalar for seed %q", seed)
	return nil
}

func party(t testing.TB, user string, devices ...string) Party {
	t.Helper()
	p := Party{UserID: user}
	for _, d := range devices {
		p.IdentityKeys = append(p.IdentityKeys, identityKey(t, user+"/"+d))
	}
	return p
}

func compute(t *testing.T, local, remote Party) Number {
	t.Helper()
	n, err := Compute(local, remote)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	return n
}

func TestSymmetric(t *testing.T) {
	alice, bob := party(t, "alice", "phone", "laptop"), party(t, "bob", "phone")
	ab, ba := compute(t, alice, bob), compute(t, bob, alice)
	if ab != ba {
		t.Fatalf("alice sees %s, bob sees %s", ab, ba)
	}
}

func TestStringFormat(t *testing.T) {
	s := compute(t, party(t, "alice", "phone"), party(t, "bob", "phone")).String()
	if !regexp.MustCompile(`^[0-9]{5}( [0-9]{5}){11}$`).MatchString(s) {
		t.Fatalf("String() = %q, want 12 space-separated groups of 5 digits", s)
	}
}

// TestHalvesBelongToParties checks that each party contributes its own 30 digits, whoever the
// other side is.
func TestHalvesBelongToParties(t *testing.T) {
	alice, bob, carol := party(t, "alice", "phone"), party(t, "bob", "phone"), party(t, "carol", "phone")
	half, err := alice.fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []Party{bob, carol} {
		n := compute(t, alice, other).digits
		if n[:halfDigits] != half && n[halfDigits:] != half {
			t.Errorf("number with %s does not contain alice's half %s: %s", other.UserID, half, n)
		}
	}
}

func TestChangesWithAnyInput(t *testing.T) {
	alice, bob := party(t, "alice", "phone", "laptop", "tablet"), party(t, "bob", "phone")
	base := compute(t, alice, bob)
	seen := map[Number]string{base: "base"}
	check := func(name string, local, remote Party) {
		t.Helper()
		n := compute(t, local, remote)
		if prev, dup := seen[n]; dup {
			t.Errorf("%s gives the same number as %s", name, prev)
		}
		seen[n] = name
	}
	for i := range alice.IdentityKeys {
		changed := Party{UserID: alice.UserID, IdentityKeys: slices.Clone(alice.IdentityKeys)}
		changed.IdentityKeys[i] = identityKey(t, "replacement")
		check("replacing alice's key "+strconv.Itoa(i), changed, bob)
	}
	check("adding a device to alice", Party{UserID: "alice", IdentityKeys: append(slices.Clone(alice.IdentityKeys), identityKey(t, "new"))}, bob)
	check("removing a device from alice", Party{UserID: "alice", IdentityKeys: alice.IdentityKeys[1:]}, bob)
	check("adding a device to bob", alice, party(t, "bob", "phone", "laptop"))
	check("renaming alice", Party{UserID: "alicia", IdentityKeys: alice.IdentityKeys}, bob)
	check("replacing bob's key", alice, party(t, "bob", "new phone"))
}

func TestOrderIndependentWithinParty(t *testing.T) {
	alice, bob := party(t, "alice", "a", "b", "c", "d"), party(t, "bob", "x", "y")
	want := compute(t, alice, bob)
	keys := alice.IdentityKeys
	for _, perm := range [][]int{{3, 2, 1, 0}, {1, 0, 3, 2}, {2, 3, 0, 1}, {0, 2, 1, 3}} {
		shuffled := Party{UserID: "alice"}
		for _, i := range perm {
			shuffled.IdentityKeys = append(shuffled.IdentityKeys, keys[i])
		}
		if got := compute(t, shuffled, Party{UserID: "bob", IdentityKeys: [][]byte{bob.IdentityKeys[1], bob.IdentityKeys[0]}}); got != want {
			t.Errorf("order %v: %s, want %s", perm, got, want)
		}
	}
	if !bytes.Equal(alice.IdentityKeys[0], keys[0]) {
		t.Error("Compute reordered the caller's key slice")
	}
}

func TestEncodeHalf(t *testing.T) {
	h := make([]byte, 64)
	copy(h[0:5], []byte{0, 0, 0, 0x01, 0x00})            // 256
	copy(h[5:10], []byte{0xff, 0xff, 0xff, 0xff, 0xff})  // 2^40-1 = 1099511627775
	copy(h[10:15], []byte{0x00, 0x00, 0x01, 0x86, 0xa0}) // 100000
	copy(h[15:20], []byte{0x00, 0x00, 0x01, 0x86, 0x9f}) // 99999
	copy(h[20:25], []byte{0x01, 0x00, 0x00, 0x00, 0x00}) // 2^32 = 4294967296
	h[30] = 0xff                                         // past the 30 bytes used
	if got, want := encodeHalf(h), "00256"+"27775"+"00000"+"99999"+"67296"+"00000"; got != want {
		t.Fatalf("encodeHalf = %s, want %s", got, want)
	}
}

func TestRejectsBadInput(t *testing.T) {
	good := party(t, "bob", "phone")
	key := identityKey(t, "k")
	compressed := append([]byte{0x02 | key[64]&1}, key[1:33]...)
	offCurve := bytes.Clone(key)
	offCurve[64] ^= 1
	infinity := append([]byte{0x04}, make([]byte, 64)...)
	tooMany := Party{UserID: "many"}
	for i := range MaxDevices + 1 {
		tooMany.IdentityKeys = append(tooMany.IdentityKeys, identityKey(t, "device"+strconv.Itoa(i)))
	}
	for _, tc := range []struct {
		name string
		p    Party
		want error
	}{
		{"no keys", Party{UserID: "alice"}, ErrNoKeys},
		{"empty user id", Party{IdentityKeys: [][]byte{key}}, ErrInvalidUserID},
		{"long user id", Party{UserID: strings.Repeat("a", MaxUserIDLen+1), IdentityKeys: [][]byte{key}}, ErrInvalidUserID},
		{"user id not UTF-8", Party{UserID: "\xff", IdentityKeys: [][]byte{key}}, ErrInvalidUserID},
		{"empty key", Party{UserID: "alice", IdentityKeys: [][]byte{nil}}, ErrInvalidKey},
		{"short key", Party{UserID: "alice", IdentityKeys: [][]byte{key[:64]}}, ErrInvalidKey},
		{"long key", Party{UserID: "alice", IdentityKeys: [][]byte{append(bytes.Clone(key), 0)}}, ErrInvalidKey},
		{"compressed key", Party{UserID: "alice", IdentityKeys: [][]byte{compressed}}, ErrInvalidKey},
		{"off-curve key", Party{UserID: "alice", IdentityKeys: [][]byte{offCurve}}, ErrInvalidKey},
		{"infinity", Party{UserID: "alice", IdentityKeys: [][]byte{infinity}}, ErrInvalidKey},
		{"one bad key among good", Party{UserID: "alice", IdentityKeys: [][]byte{key, offCurve}}, ErrInvalidKey},
		{"duplicate key", Party{UserID: "alice", IdentityKeys: [][]byte{key, identityKey(t, "other"), bytes.Clone(key)}}, ErrDuplicateKey},
		{"too many keys", tooMany, ErrTooManyKeys},
	} {
		if _, err := Compute(tc.p, good); !errors.Is(err, tc.want) {
			t.Errorf("%s as local: err = %v, want %v", tc.name, err, tc.want)
		}
		if _, err := Compute(good, tc.p); !errors.Is(err, tc.want) {
			t.Errorf("%s as remote: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	full := Party{UserID: "full", IdentityKeys: tooMany.IdentityKeys[:MaxDevices]}
	if _, err := Compute(full, good); err != nil {
		t.Errorf("exactly MaxDevices keys: %v", err)
	}
}

func FuzzCompute(f *testing.F) {
	key := identityKey(f, "fuzz")
	f.Add("alice", key, key)
	f.Add("", key, []byte{})
	f.Add("bob", key[:33], key)
	f.Fuzz(func(t *testing.T, user string, k1, k2 []byte) {
		p := Party{UserID: user, IdentityKeys: [][]byte{k1, k2}}
		n, err := Compute(p, Party{UserID: "peer", IdentityKeys: [][]byte{key}})
		if err != nil {
			for _, sentinel := range []error{ErrInvalidUserID, ErrInvalidKey, ErrDuplicateKey} {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("unexpected error kind: %v", err)
		}
		if len(n.digits) != 2*halfDigits {
			t.Fatalf("number of %d digits", len(n.digits))
		}
	})
}

func BenchmarkCompute(b *testing.B) {
	for _, devices := range []int{1, 5} {
		local, remote := Party{UserID: "alice"}, Party{UserID: "bob"}
		for i := range devices {
			local.IdentityKeys = append(local.IdentityKeys, identityKey(b, "alice"+strconv.Itoa(i)))
			remote.IdentityKeys = append(remote.IdentityKeys, identityKey(b, "bob"+strconv.Itoa(i)))
		}
		b.Run(strconv.Itoa(devices)+"-devices", func(b *testing.B) {
			for b.Loop() {
				if _, err := Compute(local, remote); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestConstructionMatchesDoc recomputes a number step by step from the package documentation,
// with sha512.Sum512 instead of the package's streaming digest.
func TestConstructionMatchesDoc(t *testing.T) {
	alice, bob := party(t, "alice", "phone", "laptop"), party(t, "bob", "phone")
	half := func(p Party) string {
		keys := slices.Clone(p.IdentityKeys)
		slices.SortFunc(keys, bytes.Compare)
		material := []byte{0, byte(len(keys))}
		for _, k := range keys {
			material = append(material, k...)
		}
		h := append([]byte{0, Version}, material...)
		h = append(append(h, byte(len(p.UserID))), p.UserID...)
		for range Iterations {
			sum := sha512.Sum512(append(h, material...))
			h = sum[:]
		}
		var digits string
		for i := 0; i < 30; i += 5 {
			v := new(big.Int).SetBytes(h[i : i+5])
			digits += fmt.Sprintf("%05d", v.Mod(v, big.NewInt(100000)).Int64())
		}
		return digits
	}
	a, b := half(alice), half(bob)
	if b < a {
		a, b = b, a
	}
	if got := compute(t, alice, bob).digits; got != a+b {
		t.Fatalf("Compute = %s, documented construction gives %s", got, a+b)
	}
}
