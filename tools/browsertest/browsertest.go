// Package browsertest runs Go compiled to WebAssembly in a real headless browser
// (Debian's chromium, driven with chromedp) and returns what it printed and its exit code:
// the harness of the tests that must run in a browser (libs/client/vault/idb's suite over
// IndexedDB, the web app's tests). A test builds a package's tests for js/wasm with
// BuildTest and runs them with Run, as `go test` would run them natively.
//
// Browsers are not part of Go: Chromium finds one, and when there is none it skips the
// test with a clear message, unless CI=true (CI installs chromium: tools/ci/setup.sh),
// where a missing browser fails the test instead.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium returns the path of a headless-capable Chromium: $GUARDYN_CHROMIUM, else
// chromium or chromium-browser on PATH. Without one it skips tb, or fails it under CI=true.
func Chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("GUARDYN_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH (Debian: apt-get install chromium; or set GUARDYN_CHROMIUM): this browser test did not run"
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}

// BuildTest compiles the tests of the package in dir (a directory, relative to the
// caller's) for GOOS=js GOARCH=wasm and returns the binary's path, removed when tb ends.
func BuildTest(tb testing.TB, dir string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "test.wasm")
	cmd := exec.Command("go", "test", "-c", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build the tests of %s for js/wasm: %v\n%s", dir, err, b)
	}
	return out
}

// Result is how a program ended in the browser.
type Result struct {
	Output   string // what it wrote to standard output and error
	ExitCode int
}

// page loads wasm_exec.js and the program, runs it with the arguments and environment of
// its query, and records its output and exit code in window.__out and window.__code.
const page = `<!doctype html><meta charset="utf-8"><title>browsertest</title>
<script src="/wasm_exec.js"></script>
<script src="/run.js"></script>`

const runJS = `(async () => {
  const cfg = await (await fetch("/config.json")).json();
  window.__out = "";
  const dec = new TextDecoder();
  const write = globalThis.fs.writeSync.bind(globalThis.fs);
  globalThis.fs.writeSync = (fd, buf) => {
    if (fd === 1 || fd === 2) { window.__out += dec.decode(buf); return buf.length; }
    return write(fd, buf);
  };
  const go = new Go();
  go.argv = ["prog.wasm", ...cfg.args];
  go.env = cfg.env;
  go.exit = (code) => { window.__code = code; window.__done = true; };
  try {
    const r = await WebAssembly.instantiateStreaming(fetch("/prog.wasm"), go.importObject);
    await go.run(r.instance);
  } catch (e) {
    window.__out += "\nbrowsertest: " + e + "\n";
    window.__code = 2; window.__done = true;
  }
})();`

// Run runs the js/wasm program at wasm in a new headless browser (chromium, a fresh
// profile) with args and env, from a page of its own origin on loopback, and waits until
// it exits or ctx ends.
func Run(ctx context.Context, chromium, wasm string, args []string, env map[string]string) (Result, error) {
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return Result{}, fmt.Errorf("browsertest: go env GOROOT: %w", err)
	}
	// The JavaScript half of the Go runtime, from the toolchain that built the program.
	execJS := filepath.Join(strings.TrimSpace(string(goroot)), "lib", "wasm", "wasm_exec.js")
	if env == nil {
		env = map[string]string{}
	}
	cfg, err := json.Marshal(map[string]any{"args": args, "env": env})
	if err != nil {
		return Result{}, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	})
	mux.HandleFunc("/run.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, runJS)
	})
	mux.HandleFunc("/config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(cfg)
	})
	mux.HandleFunc("/wasm_exec.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, execJS)
	})
	mux.HandleFunc("/prog.wasm", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/wasm")
		http.ServeFile(w, r, wasm)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // tests run as root in CI, where Chromium's sandbox refuses to start
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	var res Result
	// Poll until the program exits; the wait is bounded by ctx only, since tests take what
	// they take on a loaded machine.
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.Poll[chromedp.Void]("window.__done === true", chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)),
	)
	if err == nil {
		res.Output, err = chromedp.Run(bctx, chromedp.Evaluate[string]("window.__out"))
	}
	if err == nil {
		res.ExitCode, err = chromedp.Run(bctx, chromedp.Evaluate[int]("window.__code"))
	}
	if err != nil {
		return res, fmt.Errorf("browsertest: run %s in %s: %w", filepath.Base(wasm), chromium, err)
	}
	return res, nil
}

// RunTests runs a js/wasm test binary (BuildTest) in chromium (Chromium) with the test
// flags in args (-test.v, -test.run=…), logs its output to tb and fails tb when it fails.
func RunTests(ctx context.Context, tb testing.TB, chromium, wasm string, args ...string) Result {
	tb.Helper()
	res, err := Run(ctx, chromium, wasm, args, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("in the browser:\n%s", strings.TrimRight(res.Output, "\n"))
	if res.ExitCode != 0 {
		tb.Fatalf("the tests failed in the browser (exit code %d)", res.ExitCode)
	}
	return res
}
