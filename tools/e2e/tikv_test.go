package e2e_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/kv"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/kv/tikv"
	"github.com/guardyn/guardyn/libs/kv/tikv/tikvtest"
	"github.com/guardyn/guardyn/tools/clienttest"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// countPrefix counts the keys under prefix in s.
func countPrefix(t *testing.T, s kv.Store, prefix string) int {
	t.Helper()
	var n int
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte(prefix), 0)
		n = len(pairs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// groupEvents returns what a drain of c showed of group name: "joined" and the bodies of
// its messages, in order.
func groupEvents(t *testing.T, c *client.Client, name string) []string {
	t.Helper()
	var out []string
	for _, ev := range clienttest.Drain(t, c) {
		switch {
		case ev.Kind == client.EventGroupJoined && ev.Group == name:
			out = append(out, "joined")
		case ev.Kind == client.EventMessage && ev.Group == name:
			out = append(out, ev.From+": "+ev.Body)
		}
	}
	return out
}

// TestUserFlowsMockTiKV runs the walkthrough's main flows over real gRPC with the
// platform's kv store on client-go's in-process mock TiKV cluster, the same tikv.Store
// --kv=tikv://... opens on a real cluster (no TiKV or PD server can run here; the kv
// contract suite runs against a real one with GUARDYN_TEST_PD): register, link a second
// device, 1:1 messages both ways (the first send claims the recipient devices' one-time
// prekeys), a group created (it claims the members' key packages) and a group message.
// The accounts and prekeys are in TiKV, and no embedded kv file was made.
func TestUserFlowsMockTiKV(t *testing.T) {
	store, _ := tikvtest.Open(t, t.TempDir(), tikv.Options{}, nil)
	p := clienttest.StartWith(t, func(c *platform.Config) { c.KVStore = kvbackend.Cluster(store) })
	ctx := clienttest.Context(t)

	alice, bob, carol := p.Register(t, "alice"), p.Register(t, "bob"), p.Register(t, "carol")
	bob2 := p.Link(t, bob, "bob-laptop")
	clienttest.Drain(t, bob) // bob's phone learns of the laptop it approved

	preKeys := countPrefix(t, store, "auth/otk/")
	if preKeys == 0 {
		t.Fatal("no one-time prekey in TiKV after four devices registered")
	}
	if _, err := alice.Send(ctx, "bob", "hi bob"); err != nil {
		t.Fatal(err)
	}
	if left := countPrefix(t, store, "auth/otk/"); left > preKeys-2 {
		t.Fatalf("alice's first send to bob's two devices claimed %d one-time prekeys, want 2", preKeys-left)
	}
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2} {
		if got := messages(clienttest.Drain(t, c)); !slices.Equal(got, []string{"hi bob"}) {
			t.Fatalf("%s got %q", name, got)
		}
	}
	if _, err := bob2.Send(ctx, "alice", "hi alice, from the laptop"); err != nil {
		t.Fatal(err)
	}
	if got := messages(clienttest.Drain(t, alice)); !slices.Equal(got, []string{"hi alice, from the laptop"}) {
		t.Fatalf("alice got %q", got)
	}

	if err := alice.CreateGroup(ctx, "trip", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, "trip", "hello trip"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"bob": bob, "bob2": bob2, "carol": carol} {
		if got := groupEvents(t, c, "trip"); !slices.Equal(got, []string{"joined", "alice: hello trip"}) {
			t.Fatalf("%s saw %q of the group", name, got)
		}
	}
	if _, err := carol.SendGroup(ctx, "trip", "hello from carol"); err != nil {
		t.Fatal(err)
	}
	if got := groupEvents(t, alice, "trip"); !slices.Equal(got, []string{"carol: hello from carol"}) {
		t.Fatalf("alice saw %q of the group", got)
	}

	if n := countPrefix(t, store, "auth/"); n == 0 {
		t.Fatal("nothing under auth/ in TiKV: the platform kept its accounts elsewhere")
	}
	if _, err := os.Stat(filepath.Join(p.DataDir, kvembedded.FileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the data dir holds an embedded kv store (%v) although the kv store is TiKV", err)
	}
}
