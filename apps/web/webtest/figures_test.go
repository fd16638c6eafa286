package webtest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/apps/web/cryptobench"
)

// TestWebAppFigures measures docs/web.md's figures (run with -figures, which also builds
// with the release compression): first load to usable with a cold cache and the bytes it
// transferred, and the session crypto in the browser against native Go in the same run.
func TestWebAppFigures(t *testing.T) {
	if !*figures {
		t.Skip("measures only with -figures")
	}
	chromium(t)
	dist, _ := app(t)
	s := startServer(t, t.TempDir(), dist, "")
	b := openBrowser(t, "browser", filepath.Join(t.TempDir(), "cold"), 1000, 700)
	start := time.Now()
	b.load(s.base)
	loaded := time.Since(start)
	bytes := eval[float64](b, `performance.getEntriesByType("navigation").concat(performance.getEntriesByType("resource")).reduce((n, e) => n + e.transferSize, 0)`)
	t.Logf("first load to usable, cold cache: %v; transferred %.0f bytes", loaded.Round(time.Millisecond), bytes)
	if bytes < 1e5 {
		t.Errorf("transferred %.0f bytes: the module was not loaded", bytes)
	}
	const rounds = 20
	web := eval[map[string]float64](b, `guardyn.benchCrypto(20)`)
	native, err := cryptobench.Run(rounds)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PQXDH handshake: browser %.0f us, native %d us (x%.1f); 1 KiB message: browser %.0f us, native %d us (x%.1f)",
		web["handshakeUs"], native.Handshake.Microseconds(), web["handshakeUs"]/float64(native.Handshake.Microseconds()),
		web["messageUs"], native.Message.Microseconds(), web["messageUs"]/float64(max(native.Message.Microseconds(), 1)))
}
