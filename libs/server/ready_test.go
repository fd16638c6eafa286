package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestReadyzChecksEveryDependency: /readyz fails when any one dependency fails, names
// every failing one, and passes only when all pass.
func TestReadyzChecksEveryDependency(t *testing.T) {
	var mu sync.Mutex
	failing := map[string]bool{}
	set := func(names ...string) {
		mu.Lock()
		defer mu.Unlock()
		clear(failing)
		for _, n := range names {
			failing[n] = true
		}
	}
	check := func(name string) Check {
		return Check{Name: name, Ready: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if failing[name] {
				return errors.New("broken")
			}
			return nil
		}}
	}
	h := start(t, Config{Ready: ReadyAll(check("kv"), check("msgstore"), check("bus"))})
	if code, body := h.get(t, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with every dependency up = %d %q", code, body)
	}
	for _, name := range []string{"kv", "msgstore", "bus"} {
		set(name)
		code, body := h.get(t, "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, name+": broken") {
			t.Errorf("/readyz with %s down = %d %q; want 503 naming it", name, code, body)
		}
	}
	set("kv", "bus")
	if _, body := h.get(t, "/readyz"); !strings.Contains(body, "kv: broken") || !strings.Contains(body, "bus: broken") {
		t.Errorf("/readyz with two dependencies down = %q; want both named", body)
	}
}
