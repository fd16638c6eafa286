package e2e_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/guardyn/guardyn/libs/observe/observetest"
)

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	// quoted finds the texts a walkthrough command quotes: messages and passphrases.
	quoted = regexp.MustCompile(`"([^"]{4,})"|'([^']{4,})'`)
	// ipAddress finds IPv4 addresses, and IPv6 addresses written with "::" or in five
	// groups and more (a time of day has three).
	ipAddress = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}\b(?::\d+)?|[0-9a-fA-F:]*::[0-9a-fA-F:]*|\b(?:[0-9a-fA-F]{1,4}:){4,7}[0-9a-fA-F]{1,4}\b`)
	// opaqueBlob finds base64 or hex runs long enough to hold a key, token or ciphertext
	// (32 bytes and more); trace ids (16 bytes) and message ids (16 bytes) are shorter.
	opaqueBlob = regexp.MustCompile(`[A-Za-z0-9+/_=-]{40,}`)
)

// checkObservability scans the server's debug log and every span it exported for what
// they must never hold (docs/observability.md): the texts the walkthrough's commands
// quote (message bodies, passphrases), IP addresses, and anything long and opaque enough
// to be a key, a token or a ciphertext. It also checks that tracing works end to end: a
// message sent is one trace from the sender's call to the recipient's delivery, and log
// lines carry its trace id.
func checkObservability(t *testing.T, steps []walkStep, logs string, spans []observetest.Span) {
	t.Helper()
	var secrets []string
	for _, st := range steps {
		for _, m := range quoted.FindAllStringSubmatch(st.command, -1) {
			secrets = append(secrets, m[1]+m[2])
		}
	}
	if len(secrets) < 3 {
		t.Fatalf("the walkthrough quotes only %q: nothing to look for", secrets)
	}
	// The server's own listen addresses (with their ports), which it logs when it starts,
	// are its operator's configuration, not anyone's whereabouts.
	own := map[string]bool{}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"serving"`) {
			for _, ip := range ipAddress.FindAllString(line, -1) {
				own[ip] = true
			}
		}
	}
	scan := func(where, text string) {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the walkthrough's %q: %s", where, s, text)
			}
		}
		for _, ip := range ipAddress.FindAllString(text, -1) {
			if !own[ip] {
				t.Errorf("%s holds the IP address %s: %s", where, ip, text)
			}
		}
		for _, b := range opaqueBlob.FindAllString(text, -1) {
			// File paths and rulers are not encodings of anything.
			if strings.HasPrefix(b, "/") || !strings.ContainsAny(b, "0123456789") {
				continue
			}
			t.Errorf("%s holds an opaque %d-character blob %q: %s", where, len(b), b, text)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	debug := 0
	for _, line := range lines {
		if strings.Contains(line, `"level":"DEBUG"`) {
			debug++
		}
		scan("log line", line)
	}
	for _, sp := range spans {
		dump, _ := json.Marshal(sp)
		scan("span "+sp.Name, string(dump))
	}
	if debug < 10 || len(spans) < 10 {
		t.Fatalf("%d debug log lines and %d spans: the scan saw too little", debug, len(spans))
	}

	// One send, one trace: the recipient's delivery continues the sender's call.
	sends := map[string]bool{}
	for _, sp := range spans {
		if strings.HasSuffix(sp.Name, "MessagingService/SendMessage") || strings.HasSuffix(sp.Name, "MessagingService/SendStream") {
			sends[sp.TraceID] = true
		}
	}
	delivered := 0
	for _, sp := range spans {
		if sp.Name == "messaging.deliver" && sends[sp.TraceID] {
			delivered++
		}
	}
	if len(sends) == 0 || delivered == 0 {
		names := map[string]int{}
		for _, sp := range spans {
			names[sp.Name]++
		}
		t.Errorf("%d send traces, %d deliveries in them; spans: %v", len(sends), delivered, names)
	}
	logged := false
	for _, line := range lines {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			if id, _ := m["trace_id"].(string); sends[id] {
				logged = true
				break
			}
		}
	}
	if !logged {
		t.Error("no log line carries the trace id of a send")
	}
}
