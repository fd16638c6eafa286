package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/kv"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/tools/clienttest"
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
// record kind, with the real client and server: 9 accounts, one with a second device, a
// 1:1 message (it claims the recipient's one-time prekeys), a group of 2 accounts (3
// devices) and one of all 9 (10 devices) with a message, every device drained. It logs
// the table docs/scaling.md uses and holds the model's inputs to what the code stores.
func TestKVBytesPerDevice(t *testing.T) {
	store, err := kvembedded.Open(filepath.Join(t.TempDir(), kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := clienttest.StartWith(t, func(c *platform.Config) { c.KVStore = kvbackend.Embedded(store) })
	ctx := clienttest.Context(t)

	const accounts, devices = 9, 10
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

// TestScalingModelArithmetic recomputes the derived figures of docs/scaling.md from its
// assumptions (section 1) and the measured per-device kv bytes above, and checks that the
// document states each one, so an assumption changed in one place cannot leave stale
// arithmetic in another.
func TestScalingModelArithmetic(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "docs", "scaling.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(raw)), " ") // line breaks as spaces

	const (
		accounts     = 100e6
		devicesPer   = 1.5
		active       = 0.5
		sendsPer     = 40.0
		groupShare   = 0.3
		copies11     = 2.0  // inboxes per 1:1 send
		peakFactor   = 3.0  // peak over the daily mean
		online       = 0.10 // devices with a Receive stream at the peak
		readWithin   = 2.0 / 24
		dormant      = 0.05
		ttlDays      = 30.0
		heartbeatSec = 20.0
		mediaPerDay  = 250e3
		rowOverhead  = 120.0 // message-row columns and the id row, bytes
		envelope     = 1024.0
		notice       = 90.0
		logEntry     = 1.2e3 // a group log entry with its row, bytes
		rf           = 3.0
	)
	// Devices per group send: 80 % in groups of mean 6, 18 % of mean 40, 2 % of mean 400.
	groupDevices := 0.8*6 + 0.18*40 + 0.02*400
	devices := accounts * devicesPer
	sends := accounts * active * sendsPer
	peak := sends / 86400 * peakFactor
	perSendInboxes := (1-groupShare)*copies11 + groupShare*groupDevices
	deliveriesDay := sends * perSendInboxes
	deliveriesPeak := peak * perSendInboxes
	lwtPeak := peak*(1-groupShare)*copies11 + peak*groupShare*(groupDevices+1)
	statementsPeak := lwtPeak*6 + deliveriesPeak*3 + peak*groupShare*groupDevices*2
	rows := deliveriesDay * ((1-dormant)*readWithin + dormant*ttlDays)
	meanBody := ((1-groupShare)*copies11*envelope + groupShare*groupDevices*notice) / perSendInboxes
	kvLogical := devices * scalingKVBytesPerDevice
	logLogical := sends * groupShare * ttlDays * logEntry
	mediaLogical := accounts * active * mediaPerDay * ttlDays
	onlineDevices := devices * online
	// Every group send reads the group record: a fixed part and a share per member device.
	record := func(n float64) float64 { return 4.5e3 + n*scalingGroupBytesPerMember }
	groupRead := 0.8*record(6) + 0.18*record(40) + 0.02*record(400)

	k := func(x float64) string { return fmt.Sprintf("%.0f k", x/1e3) }
	tb := func(x float64, prec int) string { return fmt.Sprintf("%.*f TB", prec, x/1e12) }
	for _, c := range []struct{ what, want string }{
		{"devices", "D = 150 M devices"},
		{"devices per group send", fmt.Sprintf("G = %.0f member devices", groupDevices)},
		{"mean send rate", k(sends/86400) + " sends/s"},
		{"peak send rate", k(peak) + "/s at the peak"},
		{"deliveries a day", fmt.Sprintf("%.1f B a day", deliveriesDay/1e9)},
		{"deliveries per device a day", fmt.Sprintf("%.0f per device per day", deliveriesDay/devices)},
		{"peak deliveries", k(deliveriesPeak) + " deliveries/s"},
		{"peak LWTs", k(lwtPeak) + " LWT/s"},
		{"peak statements", fmt.Sprintf("%.1f M statements/s", statementsPeak/1e6)},
		{"kv logical", tb(kvLogical, 1)},
		{"kv replicated", tb(kvLogical*rf, 1)},
		{"inbox rows", fmt.Sprintf("%.0f B rows", rows/1e9)},
		{"inbox mean body", fmt.Sprintf("mean body %.0f B", meanBody)},
		{"inbox bytes replicated", tb(rows*(meanBody+rowOverhead)*rf, 0)},
		{"group log replicated", tb(logLogical*rf, 0)},
		{"media logical", tb(mediaLogical, 0)},
		{"media replicated", fmt.Sprintf("%.1f PB", mediaLogical*rf/1e15)},
		{"presence updates", k(onlineDevices/heartbeatSec) + " KV updates/s"},
		{"stored per account", fmt.Sprintf("%.0f messages stored", rows/accounts)},
		{"group record read per send", fmt.Sprintf("%.0f KB on average", groupRead/1e3)},
		{"group record reads", fmt.Sprintf("%.1f GB/s", peak*groupShare*groupRead/1e9)},
		{"media upload at the peak", fmt.Sprintf("%.0f MB/s at the peak", mediaLogical/ttlDays/86400*peakFactor/1e6)},
		{"media downloads at the peak", fmt.Sprintf("%.1f GB/s", mediaLogical/ttlDays/86400*peakFactor*perSendInboxes/1e9)},
		{"group record decoding cores", fmt.Sprintf("%.0f–%.0f cores", peak*groupShare*groupRead/95e6, peak*groupShare*groupRead/55e6)},
		{"messaging cores", fmt.Sprintf("%.0f–%.0f cores", deliveriesPeak*20e-6, deliveriesPeak*107e-6)},
	} {
		if !strings.Contains(doc, c.want) {
			t.Errorf("%s: docs/scaling.md does not say %q", c.what, c.want)
		}
	}
}
