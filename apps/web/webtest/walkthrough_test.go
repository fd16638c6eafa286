package webtest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/guardyn/guardyn/libs/client"
)

// TestWebAppWalkthrough is the README's walkthrough in real browsers: two browser users and
// a command-line user register and chat both ways with receipts and typing; a browser
// restarts on its profile and unlocks (after a wrong passphrase); a third browser links as
// a new device of an account, approved from the first after comparing fingerprints; an
// oversized message is refused before sending; and a contact's key change raises the loud
// warning and the safety-number screen.
func TestWebAppWalkthrough(t *testing.T) {
	chromium(t)
	dist, _ := app(t)
	s := startServer(t, t.TempDir(), dist, "")
	profiles := t.TempDir()

	alice := openBrowser(t, "alice's browser", filepath.Join(profiles, "a"), 1000, 700)
	alice.load(s.base)
	alice.shot("welcome")
	alice.register("alice", "alice passphrase")
	bob := openBrowser(t, "bob's browser", filepath.Join(profiles, "b"), 1000, 700)
	bob.load(s.base)
	bob.register("bob", "bob passphrase")
	carol := newCLI(t, s, "carol")

	// Browser to browser, both ways, live; the sender sees the delivery receipt.
	alice.openChat("bob")
	alice.send("hello bob, from a browser")
	bob.waitFor("alice's chat in the list", `document.querySelector('#conversations [data-peer="alice"]')`)
	bob.run(chromedp.Click(chromedp.CSS(`#conversations [data-peer="alice"]`)))
	bob.waitFor("alice's message", hasMessage("in", "hello bob, from a browser"))
	alice.waitFor("bob's delivery receipt", `document.querySelector('#messages .msg.out .tick[data-state="delivered"]')`)
	bob.run(chromedp.SendKeys(chromedp.ID("composer-text"), "hi al"))
	alice.waitFor("bob typing", `document.getElementById("typing").textContent.includes("bob is typing")`)
	bob.run(chromedp.SendKeys(chromedp.ID("composer-text"), "ice!\r"))
	alice.waitFor("bob's reply", hasMessage("in", "hi alice!"))

	// The command-line user and a browser, both ways; the browser's delivery receipt comes
	// first (await drops the events before the one it waits for).
	if _, err := carol.c.Send(ctxT(t), "alice", "hello alice, from a terminal"); err != nil {
		t.Fatal(err)
	}
	alice.waitFor("carol in the list", `document.querySelector('#conversations [data-peer="carol"]')`)
	alice.openChat("carol")
	alice.waitFor("carol's message", hasMessage("in", "hello alice, from a terminal"))
	alice.send("hello carol, from a browser")
	carol.await(t, "the browser's delivery receipt", func(e client.Event) bool {
		return e.Kind == client.EventReceipt && e.Peer == "alice"
	})
	carol.await(t, "alice's message", func(e client.Event) bool {
		return e.Kind == client.EventMessage && e.Peer == "alice" && e.Body == "hello carol, from a browser"
	})
	alice.shot("chat")

	// An oversized message is refused in the page, before anything is sent.
	alice.do(`document.getElementById("composer-text").value = "x".repeat(40000)`)
	alice.run(chromedp.Click(chromedp.CSS(`#composer button[type=submit]`)))
	alice.waitFor("the oversized message refused", `document.getElementById("composer-error").dataset.code === "bad-text"`)
	if n := countOut(alice); n != 1 {
		t.Errorf("after the oversized message the chat with carol shows %d sent messages, want 1", n)
	}
	alice.do(`document.getElementById("composer-text").value = ""`)

	// Bob's browser restarts on the same profile: history is there after unlocking, and a
	// wrong passphrase is a clear error.
	bob.cancel()
	bob = openBrowser(t, "bob's browser, restarted", filepath.Join(profiles, "b"), 1000, 700)
	bob.load(s.base)
	bob.waitFor("the unlock form", `!document.getElementById("unlock-box").hidden && document.getElementById("unlock-user").value === "bob"`)
	bob.fill("unlock-pass", "not bob's passphrase")
	bob.run(chromedp.Click(chromedp.CSS(`#unlock-form button[type=submit]`)))
	bob.waitFor("the wrong passphrase refused", `document.getElementById("unlock-error").dataset.code === "wrong-passphrase"`)
	if got := bob.text("unlock-error"); got != "Wrong passphrase." {
		t.Errorf("wrong passphrase: the page says %q", got)
	}
	bob.shot("wrong-passphrase")
	bob.fill("unlock-pass", "bob passphrase")
	bob.run(chromedp.Click(chromedp.CSS(`#unlock-form button[type=submit]`)))
	bob.waitFor("bob unlocked", `document.body.dataset.user === "bob"`)
	bob.run(chromedp.Click(chromedp.CSS(`#conversations [data-peer="alice"]`)))
	bob.waitFor("the history after the restart", hasMessage("in", "hello bob, from a browser")+" && "+hasMessage("out", "hi alice!"))

	// A third browser links as a new device of alice's account; alice's browser approves it
	// after the fingerprints match.
	phone := openBrowser(t, "alice's phone browser", filepath.Join(profiles, "c"), 375, 740)
	phone.load(s.base)
	phone.fill("link-user", "alice")
	phone.fill("link-device", "phone")
	phone.fill("link-pass", "phone passphrase")
	phone.run(chromedp.Click(chromedp.CSS(`#link-form button[type=submit]`)))
	phone.waitFor("the link fingerprint", `document.getElementById("link-fingerprint").textContent.length > 8`)
	fp := phone.text("link-fingerprint")
	alice.run(chromedp.Click(chromedp.ID("devices-open")))
	alice.waitFor("the link request", `document.querySelector("#links [data-link]")`)
	if got := alice.text("links"); !strings.Contains(got, fp) {
		t.Fatalf("alice's browser shows link requests %q, not the phone's fingerprint %q", got, fp)
	}
	alice.shot("link-approve")
	alice.run(chromedp.Click(chromedp.CSS("#links [data-link]")))
	phone.waitFor("the phone linked", `document.body.dataset.user === "alice"`)
	alice.run(chromedp.Click(chromedp.ID("devices-close")))
	// The new device receives: a message to alice reaches it too.
	if _, err := carol.c.Send(ctxT(t), "alice", "for all of alice's devices"); err != nil {
		t.Fatal(err)
	}
	phone.waitFor("carol in the phone's list", `document.querySelector('#conversations [data-peer="carol"]')`)
	phone.run(chromedp.Click(chromedp.CSS(`#conversations [data-peer="carol"]`)))
	phone.waitFor("carol's message on the phone", hasMessage("in", "for all of alice's devices"))
	phone.shot("phone-chat")

	// Carol's account is replaced (deleted and registered again under her name): alice's
	// browser refuses to send and shows the loud warning, then the safety-number screen.
	carol.deleted.Store(true)
	if err := carol.c.DeleteAccount(ctxT(t), "carol"); err != nil {
		t.Fatal(err)
	}
	newCLI(t, s, "carol")
	alice.run(chromedp.SendKeys(chromedp.ID("composer-text"), "are you still carol?\r"))
	alice.waitFor("the key-change warning", `!document.getElementById("keychange").hidden`)
	if code := evalString(alice, `document.getElementById("composer-error").dataset.code`); code != "identity-changed" {
		t.Errorf("send after the key change: error code %q, want identity-changed", code)
	}
	alice.run(chromedp.Click(chromedp.ID("keychange-check")))
	alice.waitFor("the safety number", `/^[0-9 ]{60,}$/.test(document.getElementById("safety-number").textContent)`)
	alice.waitFor("the warning on the safety screen", `!document.getElementById("safety-warning").hidden`)
	alice.shot("key-change")

	for _, b := range []*browser{alice, bob, phone} {
		b.noPolicyViolations()
	}
}

func countOut(b *browser) int {
	return eval[int](b, `document.querySelectorAll("#messages .msg.out").length`)
}

func evalString(b *browser, expr string) string {
	return eval[string](b, expr)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
