//go:build linux && amd64

package powerloss_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/internal/powerloss"
)

const childEnv = "GUARDYN_POWERLOSS_TEST_ROOT"

const modeEnv = "GUARDYN_POWERLOSS_TEST_MODE"

func TestMain(m *testing.M) {
	if root := os.Getenv(childEnv); root != "" {
		run := child
		switch os.Getenv(modeEnv) {
		case "append":
			run = appendChild
		case "rename":
			run = renameChild
		case "untraced":
			run = untracedChild
		}
		if err := run(root); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child writes to three files: "synced" is written, synced and its directory synced;
// "nodir" is written and synced but its directory entry never is; in "synced" a second
// write follows the sync.
func child(root string) error {
	if err := powerloss.Child(); err != nil {
		return err
	}
	create := func(name string) (*os.File, error) {
		return os.OpenFile(filepath.Join(root, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	}
	f, err := create("synced")
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte("durable"), 0); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	d, err := os.Open(root)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		return err
	}
	fmt.Println("synced")
	if _, err := f.WriteAt([]byte("-and-lost"), 7); err != nil {
		return err
	}
	fmt.Println("written")
	g, err := create("nodir")
	if err != nil {
		return err
	}
	if _, err := g.WriteAt([]byte("x"), 0); err != nil {
		return err
	}
	if err := g.Sync(); err != nil {
		return err
	}
	fmt.Println("done")
	return nil
}

func TestRestore(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+root)
	tr, err := powerloss.Run(cmd, root, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(tr.Summary())
	lines, at := tr.LineEvents()
	if want := []string{"powerloss: traced", "synced", "written", "done"}; fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("lines %q, want %q", lines, want)
	}
	syncs := tr.Syncs()
	if len(syncs) != 3 {
		t.Fatalf("%d syncs traced, want 3", len(syncs))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	read := func(dir, name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			return "<none>"
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, c := range []struct {
		k      int
		loss   powerloss.Loss
		synced string
	}{
		{syncs[1], powerloss.DropAll, "<none>"},      // before the directory sync ran
		{syncs[1] + 1, powerloss.DropAll, "durable"}, // after it
		{at[2] + 1, powerloss.DropAll, "durable"},    // the second write is lost
		{at[2] + 1, powerloss.KeepAll, "durable-and-lost"},
		{tr.Len(), powerloss.DropAll, "durable"},
	} {
		d := tr.Replay()
		if err := d.Advance(c.k); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "disk")
		if err := d.Restore(dir, c.loss, rng); err != nil {
			t.Fatal(err)
		}
		if got := read(dir, "synced"); got != c.synced {
			t.Errorf("cut at %d, %v: synced holds %q, want %q", c.k, c.loss, got, c.synced)
		}
		if got := read(dir, "nodir"); got != "<none>" {
			t.Errorf("cut at %d, %v: nodir exists (%q) though its directory was never synced", c.k, c.loss, got)
		}
	}
	// Torn and Reorder keep some prefix or subset of the lost write.
	d := tr.Replay()
	d.Advance(tr.Len())
	seen := map[string]bool{}
	for i := range 40 {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("disk", i))
		loss := powerloss.Torn
		if i%2 == 1 {
			loss = powerloss.Reorder
		}
		if err := d.Restore(dir, loss, rng); err != nil {
			t.Fatal(err)
		}
		got := read(dir, "synced")
		if !bytes.HasPrefix([]byte("durable-and-lost"), []byte(got)) && got != "durable" {
			t.Fatalf("%v left %q", loss, got)
		}
		seen[got] = true
	}
	if len(seen) < 3 {
		t.Fatalf("torn and reordered cuts gave only %v", seen)
	}
}

func TestChildUntraced(t *testing.T) {
	if err := powerloss.Child(); err == nil {
		t.Fatal("Child succeeded in a process nobody traces")
	}
}

// appendChild writes to a file under the root opened with O_APPEND, which the model
// does not cover.
func appendChild(root string) error {
	if err := powerloss.Child(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(root, "f"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("unmodeled"))
	return err
}

// renameChild writes "one" to "a" with write(2) and makes it durable, renames it to
// "b", writes "two" after it through the same descriptor and syncs the file but not yet
// the directory, then syncs the directory.
func renameChild(root string) error {
	if err := powerloss.Child(); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(root, "a"))
	if err != nil {
		return err
	}
	d, err := os.Open(root)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte("one")); err != nil {
		return err
	}
	if err := errors.Join(f.Sync(), d.Sync()); err != nil {
		return err
	}
	fmt.Println("a")
	if err := os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")); err != nil {
		return err
	}
	if _, err := f.Write([]byte("two")); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	fmt.Println("renamed")
	if err := d.Sync(); err != nil {
		return err
	}
	fmt.Println("done")
	return nil
}

// TestRename checks the model of write(2) and rename: the data belongs to the file
// whichever name the last directory sync made durable.
func TestRename(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+root, modeEnv+"=rename")
	tr, err := powerloss.Run(cmd, root, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(tr.Summary())
	lines, at := tr.LineEvents()
	if want := []string{"powerloss: traced", "a", "renamed", "done"}; fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("lines %q, want %q", lines, want)
	}
	for _, c := range []struct {
		k    int
		want map[string]string
	}{
		{at[1], map[string]string{"a": "one"}},
		{at[2], map[string]string{"a": "onetwo"}}, // renamed, but the directory not synced
		{tr.Len(), map[string]string{"b": "onetwo"}},
	} {
		d := tr.Replay()
		if err := d.Advance(c.k); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "disk")
		if err := d.Restore(dir, powerloss.DropAll, rand.New(rand.NewPCG(1, 2))); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			got[e.Name()] = string(b)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("cut at %d: disk holds %v, want %v", c.k, got, c.want)
		}
	}
}

// untracedChild writes and syncs without calling Child first.
func untracedChild(root string) error {
	return os.WriteFile(filepath.Join(root, "f"), []byte("unseen"), 0o600)
}

// TestUnmodeledFails checks that a trace the model cannot follow is an error, not a
// weaker test: a write to a file opened with O_APPEND, and a child that never called
// Child.
func TestUnmodeledFails(t *testing.T) {
	for _, mode := range []string{"append", "untraced"} {
		root := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+root, modeEnv+"="+mode)
		if _, err := powerloss.Run(cmd, root, time.Minute); err == nil {
			t.Errorf("%s: Run succeeded", mode)
		} else {
			t.Logf("%s: %v", mode, err)
		}
	}
}
