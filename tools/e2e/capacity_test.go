package e2e_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/libs/kv"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/tools/client"
	"github.com/guardyn/guardyn/tools/client/clienttest"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// The kv bytes per device that docs/scaling.md builds its capacity model on (its
// "Per user and per device" table). TestKVBytesPerDevice measures them on the real
// platform; when a record grows or shrinks by more than a quarter, the test fails and
// the model must be redone with the new figure.
const (
	scalingKVBytesPerDevice    = 219_000 // auth/ and presence/ kv bytes (keys and values) per device
	scalingOTKBytesPerKey      = 116     // one one-time EC prekey: key and value
	scalingKEMBytesPerKey      = 1_790   // one one-time ML-KEM prekey: key and JSON value
	scalingKPBytesPerKey       = 2_870   // one MLS KeyPackage: key and value
	scalingGroupBytesPerMember = 2_450   // growth of msg/group/<id> per member device
)

// kvClass names the record kind of a kv key for the capacity model: the service prefix
// and the first path element ("auth/otk"), ids dropped.
func kvClass(key []byte) string {
	parts := strings.SplitN(string(key), "/", 3)
	if len(parts) < 2 {
		return string(key)
	}
	return parts[0] + "/" + parts[1]
}

// TestKVBytesPerDevice measures what a device and a group member cost the kv store, by
// record kind, with the real client and server: 16 accounts, one with a second device, a
// 1:1 message (it claims the recipient's one-time prekeys), a group of 2 accounts (3
// devices) and one of all 16 (17 devices) with a message, every device drained. It logs
// the table docs/scaling.md uses and holds the model's inputs to what the code stores.
func TestKVBytesPerDevice(t *testing.T) {
	store, err := kvembedded.Open(filepath.Join(t.TempDir(), kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := clienttest.StartWith(t, func(c *platform.Config) { c.KVStore = kvbackend.Embedded(store) })
	ctx := clienttest.Context(t)

	const accounts, devices = 16, 17
	var users []*client.Client
	var names []string
	for i := range accounts {
		names = append(names, fmt.Sprintf("user%02d", i))
		users = append(users, p.Register(t, names[i]))
	}
	alice := users[0]
	users = append(users, p.Link(t, alice, "alice-laptop"))
	clienttest.Drain(t, alice)
	if _, err := alice.Send(ctx, names[1], "hi"); err != nil {
		t.Fatal(err)
	}
	if err := alice.CreateGroup(ctx, "small", names[1]); err != nil {
		t.Fatal(err)
	}
	if err := alice.CreateGroup(ctx, "big", names[1:]...); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, "big", "hello"); err != nil {
		t.Fatal(err)
	}
	for _, c := range users[1:] {
		clienttest.Drain(t, c)
	}

	type tally struct{ keys, bytes int }
	byClass := map[string]*tally{}
	var groups []int // the size of each msg/group/ record
	var perDevice int
	if err := store.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := tx.Scan([]byte{0}, []byte{0xff}, 0)
		if err != nil {
			return err
		}
		for _, p := range pairs {
			class := kvClass(p.Key)
			c := byClass[class]
			if c == nil {
				c = &tally{}
				byClass[class] = c
			}
			n := len(p.Key) + len(p.Value)
			c.keys++
			c.bytes += n
			if !strings.HasPrefix(class, "msg/") {
				perDevice += n
			}
			if class == "msg/group" {
				groups = append(groups, n)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	classes := make([]string, 0, len(byClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var b strings.Builder
	fmt.Fprintf(&b, "%d accounts, %d devices; groups of 3 and %d devices\n", accounts, devices, devices)
	fmt.Fprintf(&b, "%-22s %6s %9s %10s %10s\n", "kind", "keys", "bytes", "B/key", "B/device")
	for _, c := range classes {
		x := byClass[c]
		fmt.Fprintf(&b, "%-22s %6d %9d %10d %10d\n", c, x.keys, x.bytes, x.bytes/x.keys, x.bytes/devices)
	}
	fmt.Fprintf(&b, "%-22s %6s %9d %10s %10d\n", "auth/ and presence/", "", perDevice, "", perDevice/devices)
	sort.Ints(groups)
	if len(groups) != 2 {
		t.Fatalf("%d group records, want 2", len(groups))
	}
	perMember := (groups[1] - groups[0]) / (devices - 3)
	fmt.Fprintf(&b, "group record: %d B at 3 devices, %d B at %d devices: %d B per member device\n", groups[0], groups[1], devices, perMember)
	t.Log("\n" + b.String())

	// The model's inputs, each within a quarter of what was measured.
	within := func(name string, got, model int) {
		t.Helper()
		if got*4 < model*3 || got*4 > model*5 {
			t.Errorf("%s: measured %d bytes, docs/scaling.md models %d: redo the model", name, got, model)
		}
	}
	within("kv bytes per device (auth/, presence/)", perDevice/devices, scalingKVBytesPerDevice)
	perKey := func(class string) int {
		x := byClass[class]
		if x == nil || x.keys == 0 {
			t.Fatalf("no %s records stored", class)
		}
		return x.bytes / x.keys
	}
	within("auth/otk per key", perKey("auth/otk"), scalingOTKBytesPerKey)
	within("auth/kem per key", perKey("auth/kem"), scalingKEMBytesPerKey)
	within("auth/kp per key", perKey("auth/kp"), scalingKPBytesPerKey)
	within("group record per member device", perMember, scalingGroupBytesPerMember)
}
