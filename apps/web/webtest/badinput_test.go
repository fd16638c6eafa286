package webtest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyDist copies the built app into a new directory the test may alter.
func copyDist(t *testing.T, dist string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dist, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestWebAppRefusesTamperedCode serves the app with its WebAssembly altered (one byte) or
// truncated, through the real web port: the browser refuses it by its Subresource
// Integrity hash, nothing of it runs, and the page says why.
func TestWebAppRefusesTamperedCode(t *testing.T) {
	chromium(t)
	dist, res := app(t)
	for name, alter := range map[string]func([]byte) []byte{
		"flipped":   func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)-100] },
	} {
		t.Run(name, func(t *testing.T) {
			bad := copyDist(t, dist)
			wasm := filepath.Join(bad, res.Assets["app.wasm"])
			b, err := os.ReadFile(wasm)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(wasm, alter(b), 0o644); err != nil {
				t.Fatal(err)
			}
			// The precompressed variants would still hold the good bytes.
			os.Remove(wasm + ".gz")
			os.Remove(wasm + ".br")
			s := startServer(t, t.TempDir(), bad, "")
			br := openBrowser(t, "browser", filepath.Join(t.TempDir(), "p"), 800, 600)
			br.run(chromedpNavigate(s.base))
			br.waitFor("the integrity failure", `!document.getElementById("fatal").hidden`)
			if got := br.text("fatal-title"); got != "The app's code failed its integrity check" {
				t.Errorf("fatal title %q", got)
			}
			if eval[bool](br, `typeof guardyn !== "undefined"`) {
				t.Error("the tampered WebAssembly ran: globalThis.guardyn exists")
			}
			if name == "flipped" {
				br.shot("integrity")
			}
		})
	}
}

// TestWebAppServerGarbage puts the app in front of a server that answers every API call
// with garbage (status 200, a gRPC-Web content type, random bytes): registering shows the
// server-garbage state, and the page stays usable.
func TestWebAppServerGarbage(t *testing.T) {
	chromium(t)
	dist, _ := app(t)
	files := http.FileServer(http.Dir(dist))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/guardyn.") {
			w.Header().Set("Content-Type", "application/grpc-web+proto")
			w.Write(bytes.Repeat([]byte{0x00, 0x00, 0x00, 0x00, 0x05, 0xff, 0xfe, 0x01, 0x80, 0x80}, 3))
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	br := openBrowser(t, "browser", filepath.Join(t.TempDir(), "p"), 800, 600)
	br.load(srv.URL)
	br.fill("reg-user", "dave")
	br.fill("reg-pass", "dave passphrase")
	br.run(chromedpClick(`#register-form button[type=submit]`))
	br.waitFor("the garbage state", `document.getElementById("register-error").dataset.code === "server-garbage"`)
	if !eval[bool](br, `!document.querySelector("#register-form button[type=submit]").disabled`) {
		t.Error("the register form stays disabled after the failure")
	}
	if profiles := eval[int](br, `guardyn.profiles().then(p => p.length)`); profiles != 0 {
		t.Errorf("a failed registration left %d profiles in the browser", profiles)
	}
}
