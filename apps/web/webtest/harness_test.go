package webtest

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/apps/web/bundle"
	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

var figures = flag.Bool("figures", false, "measure the figures of docs/web.md (load time and bytes with the release build's compression, crypto in the browser and natively, frame times)")

var updateShots = flag.Bool("screenshots", false, "write the screenshots of the main screens into docs/web/")

// chromium returns the browser to drive, or skips the test without one (fails under CI=true:
// tools/ci/setup.sh installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "the browser tests DID NOT RUN: no chromium on PATH (tools/ci/setup.sh installs the Debian package chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// moduleRoot is the directory of go.mod above the test's working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

var (
	buildOnce sync.Once
	builtDir  string
	built     *bundle.Result
	buildErr  error
)

// app builds the web app once per test binary, as go run ./apps/web/build does.
func app(t *testing.T) (string, *bundle.Result) {
	t.Helper()
	buildOnce.Do(func() {
		builtDir, buildErr = os.MkdirTemp("", "guardyn-webtest-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		built, buildErr = bundle.Build(ctx, bundle.Options{ModuleDir: moduleRoot(t), Out: filepath.Join(builtDir, "dist"), Fast: !*figures})
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(builtDir, "dist"), built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// server is a platform with its web port serving an app directory.
type server struct {
	p       *platform.Platform
	base    string
	conn    *grpc.ClientConn
	dataDir string
	stop    func()
}

// startServer starts a platform on dataDir serving the app in dist on webAddr ("" for any
// port).
func startServer(t *testing.T, dataDir, dist, webAddr string) *server {
	t.Helper()
	if webAddr == "" {
		webAddr = "127.0.0.1:0"
	}
	root, err := os.OpenRoot(dist)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := platform.Start(ctx, platform.Config{DataDir: dataDir, GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		WebAddr: webAddr, WebApp: root.FS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	conn, err := grpc.NewClient(p.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	s := &server{p: p, base: "http://" + p.WebAddr().String(), conn: conn, dataDir: dataDir}
	s.stop = func() {
		once.Do(func() {
			conn.Close()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("platform run: %v", err)
			}
			root.Close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

// browser is one headless chromium with its own profile directory.
type browser struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel func()
	mu     sync.Mutex
	errs   []string // exceptions, CSP and integrity reports from the console
}

// openBrowser starts chromium on profile (a user data directory: IndexedDB and
// localStorage live there and survive a restart) with a window of width × height.
func openBrowser(t *testing.T, name, profile string, width, height int) *browser {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromium(t)), chromedp.UserDataDir(profile), chromedp.WindowSize(width, height),
		chromedp.NoSandbox, chromedp.Flag("disable-extensions", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, name: name, ctx: ctx}
	// The first Run starts the browser: without a timeout, which would end it.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		acancel()
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				b.mu.Lock()
				b.errs = append(b.errs, m.String())
				b.mu.Unlock()
			}
		}
	}()
	var once sync.Once
	b.cancel = func() {
		once.Do(func() {
			// Browser.close, waited for: the browser writes its storage out on the way.
			if err := chromedp.Cancel(ctx); err != nil {
				t.Logf("%s: close chromium: %v", name, err)
			}
			cancel()
			acancel()
		})
	}
	t.Cleanup(b.cancel)
	return b
}

// consoleErrors returns what the console reported so far.
func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// noPolicyViolations fails the test when the page broke its Content-Security-Policy or
// Trusted Types (the app must run under the server's real headers).
func (b *browser) noPolicyViolations() {
	b.t.Helper()
	for _, e := range b.consoleErrors() {
		if strings.Contains(e, "Content Security Policy") || strings.Contains(e, "TrustedHTML") || strings.Contains(e, "Trusted Type") {
			b.t.Errorf("%s: policy violation: %s", b.name, e)
		}
	}
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\npage: %s", b.name, err, b.describe())
	}
}

// eval evaluates a JS expression, awaiting a promise, into a T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: %s: %v\npage: %s", b.name, expr, err, b.describe())
	}
	return v
}

// do evaluates a JS expression for its effect.
func (b *browser) do(expr string) { eval[any](b, expr) }

// describe is the page's visible state, for failure messages.
func (b *browser) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const t = (id) => { const e = document.getElementById(id); return e ? e.textContent.trim() : ""; };
		return JSON.stringify({conn: t("conn"), detail: document.getElementById("conn").title, msgs: [...document.querySelectorAll("#messages .msg")].map(li => li.className + ":" + li.dataset.id + ":" + li.textContent).slice(-4), composer: document.getElementById("composer-text").value.slice(0, 80), fatal: t("fatal-text"), errors: [...document.querySelectorAll(".error")].map(e => e.textContent).filter(Boolean),
			view: document.body.dataset.view, user: document.body.dataset.user}); })()`))
	return s + " console: " + strings.Join(b.consoleErrors(), " | ")
}

// waitFor polls a JS condition until it is true, up to a deadline generous for a loaded
// machine.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: waiting for %s (%s): %v\npage: %s", b.name, what, expr, err, b.describe())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// text returns the trimmed text of the element with the id.
func (b *browser) text(id string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.getElementById(%q) || {textContent: ""}).textContent.trim()`, id))
}

// fill sets a field's value.
func (b *browser) fill(id, value string) {
	b.t.Helper()
	b.run(chromedp.SetValue(chromedp.ID(id), value))
}

// load opens the app and waits until it is usable.
func (b *browser) load(base string) {
	b.t.Helper()
	b.run(chromedp.Navigate(base + "/"))
	b.waitFor("the app to start", `window.guardynUI && window.guardynUI.ready && !document.getElementById("welcome").hidden`)
}

// register creates an account from the welcome screen.
func (b *browser) register(user, pass string) {
	b.t.Helper()
	b.fill("reg-user", user)
	b.fill("reg-pass", pass)
	b.run(chromedp.Click(chromedp.CSS(`#register-form button[type=submit]`)))
	b.waitFor(user+" registered", fmt.Sprintf(`document.body.dataset.user === %q`, user))
	b.waitFor("the delivery stream", `document.getElementById("conn").dataset.state === "online"`)
}

// openChat opens the conversation with peer from the sidebar form.
func (b *browser) openChat(peer string) {
	b.t.Helper()
	b.fill("new-peer", peer)
	b.run(chromedp.Click(chromedp.CSS(`#new-chat button[type=submit]`)))
	b.waitFor("the chat with "+peer, fmt.Sprintf(`document.getElementById("chat-peer").textContent === %q`, peer))
}

// send types text into the composer and presses Enter.
func (b *browser) send(text string) {
	b.t.Helper()
	b.run(chromedp.SendKeys(chromedp.ID("composer-text"), text+"\r"))
	b.waitFor("the message to be sent", fmt.Sprintf(`[...document.querySelectorAll("#messages .msg.out")].some(li => li.querySelector(".body").textContent === %q && li.dataset.id)`, text))
}

// hasMessage is the JS condition that the open chat shows a message with text.
func hasMessage(dir, text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages .msg.%s .body")].some(p => p.textContent === %q)`, dir, text)
}

// shot captures the viewport; with -screenshots it is written to docs/web/name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	if len(png) < 1000 {
		b.t.Errorf("%s: screenshot %s is %d bytes", b.name, name, len(png))
	}
	if *updateShots {
		dir := filepath.Join(moduleRoot(b.t), "docs", "web")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// cli is a command-line user: libs/client over native gRPC, as apps/guardyn.
type cli struct {
	c       *client.Client
	events  chan client.Event
	deleted atomic.Bool // the account was deleted: its listener ends, as it should
}

var testVault = vault.Params{LogN: 10, R: 8, P: 1}

func newCLI(t *testing.T, s *server, user string) *cli {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Register(ctx, client.Config{Home: t.TempDir(), Passphrase: []byte("cli passphrase"), Conn: s.conn, VaultParams: testVault}, user, "cli")
	if err != nil {
		t.Fatalf("cli %s: register: %v", user, err)
	}
	u := &cli{c: c, events: make(chan client.Event, 1024)}
	lctx, lcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := c.Listen(lctx, false, func(e client.Event) { u.events <- e })
		if err != nil && lctx.Err() == nil && !u.deleted.Load() {
			t.Errorf("cli %s: listen: %v", user, err)
		}
	}()
	t.Cleanup(func() { lcancel(); <-done; c.Close() })
	return u
}

// await waits for an event matching ok.
func (u *cli) await(t *testing.T, what string, ok func(client.Event) bool) client.Event {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case e := <-u.events:
			if ok(e) {
				return e
			}
		case <-timeout:
			t.Fatalf("cli: no %s", what)
		}
	}
}

func chromedpNavigate(base string) chromedp.Action[chromedp.Void] {
	return chromedp.Navigate(base + "/")
}

func chromedpClick(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(sel))
}
