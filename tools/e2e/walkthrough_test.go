package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/observe/observetest"
)

// TestREADMEWalkthrough runs the walkthrough of the repository README as written: every
// command of its shell blocks, in order, each block in the terminal its first line names,
// against the server and CLI binaries built from this checkout. A command whose comment
// says it "keeps running" runs in the background, as it would hold its terminal; the
// terminal's next command waits for it to end. The expectations below say what each
// command must print; a command in the README without one fails the test, so the README
// and the code cannot drift apart unnoticed.
func TestREADMEWalkthrough(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parseWalkthrough(string(readme))
	if err != nil {
		t.Fatalf("README walkthrough: %v", err)
	}

	type expectation struct {
		want []string // regexps the command's output must match (in the background: eventually)
		// waitFor names output another terminal must have printed first, as a person
		// would wait to see it ("terminal 1: alice: hello bob").
		waitFor []string
		// retry reruns a one-shot command until its output matches, as a person would
		// run it again when what they wait for has not arrived yet.
		retry bool
	}
	expect := map[string]expectation{
		"setup: go install ./apps/guardyn":                     {},
		"terminal 1: guardyn register --device-name phone bob": {want: []string{`registered bob \(account \S+\) as device 1 "phone"`}},
		"terminal 1: guardyn listen": {want: []string{`\] alice: hello bob$`, `\] alice: a note from a pipe$`,
			`\] you joined group trip$`, `\] trip / alice: hello trip$`, `\] alice changed group trip \(epoch \d+, 3 devices\)$`}},
		"terminal 2: guardyn register --device-name phone alice":     {want: []string{`registered alice \(account \S+\) as device 1 "phone"`}},
		`terminal 2: guardyn send bob "hello bob"`:                   {want: []string{`^sent [0-9a-f]{32} to bob$`}},
		`terminal 2: echo "a note from a pipe" | guardyn send bob -`: {want: []string{`^sent [0-9a-f]{32} to bob$`}},
		"terminal 2: guardyn listen --once":                          {want: []string{`receipt: bob device 1 received`}, waitFor: []string{"terminal 1: alice: a note from a pipe"}, retry: true},
		"terminal 2: guardyn safety-number bob":                      {want: []string{`^(\d{5} ){11}\d{5}$`}},
		"terminal 3: guardyn link --device-name laptop alice":        {want: []string{`guardyn approve \S+`, `linked: this profile is device 2 of alice`}},
		"terminal 2: guardyn approve":                                {want: []string{`^\S+ +"laptop" +fingerprint`}, waitFor: []string{"terminal 3: guardyn approve"}},
		"terminal 2: guardyn approve <link-id>":                      {want: []string{`approved "laptop" as device 2`}},
		`terminal 4: guardyn send alice "hi alice, your laptop gets this too"`: {want: []string{
			`^sent [0-9a-f]{32} to alice$`, `warning: alice has a new device 2`},
			// The laptop uploads its prekeys before it says it is linked.
			waitFor: []string{"terminal 3: linked: this profile is device 2 of alice"}},
		"terminal 4: guardyn safety-number alice": {want: []string{`^(\d{5} ){11}\d{5}$`, `this number changed since you last trusted alice`}},
		"terminal 4: guardyn trust alice":         {want: []string{`now trusting alice's current identity keys`}},
		"terminal 3: guardyn listen --once":       {want: []string{`\] bob: hi alice, your laptop gets this too$`}, retry: true},
		"terminal 3: guardyn history":             {want: []string{`\] bob: hi alice, your laptop gets this too$`}},

		// Files.
		"terminal 2: head -c 3000000 /dev/urandom > /tmp/guardyn/photo.jpg": {},
		"terminal 2: guardyn send-file bob /tmp/guardyn/photo.jpg":          {want: []string{`^sent file photo.jpg \(2.9 MiB\) to bob as [0-9a-f]{32}$`}},
		"terminal 4: mkdir -p /tmp/guardyn/downloads":                       {},
		"terminal 4: guardyn get <message-id> /tmp/guardyn/downloads": {want: []string{`^saved \S+/downloads/photo.jpg \(2.9 MiB, verified\)$`},
			waitFor: []string{"terminal 1: fetch it with: guardyn get"}},
		"terminal 4: cmp /tmp/guardyn/photo.jpg /tmp/guardyn/downloads/photo.jpg && echo same bytes": {want: []string{`^same bytes$`}},
		"terminal 5: guardyn register --device-name phone carol":                                     {want: []string{`registered carol \(account \S+\) as device 1 "phone"`}},
		"terminal 5: guardyn listen": {want: []string{`\] you joined group trip$`, `\] trip / alice: hello trip$`, `\] trip / bob: hi from bob$`,
			`\] !!! alice removed you from group trip: you can no longer read or send there$`}},
		"terminal 2: guardyn group create trip bob carol": {want: []string{`^created group trip with \[bob carol\]$`}},
		`terminal 2: guardyn send trip "hello trip"`:      {want: []string{`^sent [0-9a-f]{32} to group trip$`}},
		"terminal 2: guardyn group members trip": {want: []string{`^alice +device 1 .* this device$`, `^alice +device 2 .* verified$`,
			`^bob +device 1 .* verified$`, `^carol +device 1 .* verified$`}},
		// Bob's listen joins him to the group; he writes once it says so.
		`terminal 4: guardyn send trip "hi from bob"`: {want: []string{`^sent [0-9a-f]{32} to group trip$`}, waitFor: []string{"terminal 1: you joined group trip"}},
		"terminal 4: guardyn group update trip":       {want: []string{`^updated your keys in group trip$`}},
		"terminal 2: guardyn group remove trip carol": {want: []string{`^removed \[carol\] from group trip$`}},
		"terminal 2: guardyn history":                 {want: []string{`\] #trip / bob: hi from bob$`, `\] you -> #trip: hello trip$`}},

		// Presence.
		"terminal 4: guardyn presence privacy contacts alice": {want: []string{`^presence visible to contacts: alice`, `^status text key sent to them end to end$`}},
		"terminal 2: guardyn presence privacy contacts bob":   {want: []string{`^presence visible to contacts: bob`}},
		"terminal 2: guardyn listen --once (again)":           {want: []string{`bob shares their status text with you`}, retry: true},
		// Bob is online (his listen in terminal 1 is his heartbeat), then busy with a text
		// only alice's devices can open.
		"terminal 2: guardyn watch bob":                               {want: []string{`^bob: busy "in a meeting", last seen `}},
		`terminal 4: guardyn presence set busy --text "in a meeting"`: {want: []string{`^this device shows busy: "in a meeting", sealed for your contacts$`}},
		"terminal 4: guardyn presence show alice":                     {want: []string{`^alice: (online|offline)`}},
		"terminal 4: guardyn push list":                               {want: []string{`^no device of this account has a push target$`}},
	}

	bin := t.TempDir()
	// The server runs as an operator debugging it would: debug logs, every call traced to
	// a collector. After the walkthrough both are scanned for what must never be in them.
	collector, err := observetest.Start(true)
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Close()
	var serverLog lockedBuffer
	srv := startServerBinary(t, root, &serverLog, "-log-level", "debug", "-otlp-endpoint", collector.Addr(), "-otlp-insecure", "-trace-ratio", "1")
	server := srv.addr
	profiles := t.TempDir()
	// HOME is a fresh directory (the profiles default under it); the go command keeps the
	// caches it found, rather than deriving new, empty ones from HOME.
	goEnv, err := exec.Command("go", "env", "GOMODCACHE", "GOCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	caches := strings.Fields(string(goEnv))
	if len(caches) != 3 {
		t.Fatalf("go env printed %q", goEnv)
	}
	baseEnv := append(os.Environ(),
		"GOMODCACHE="+caches[0], "GOCACHE="+caches[1], "GOPATH="+caches[2],
		"GOBIN="+bin,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+t.TempDir(),
		"GUARDYN_SERVER="+server,
	)

	terms := map[string]*terminal{}
	output := func(name string) *terminal {
		if terms[name] == nil {
			terms[name] = &terminal{name: name}
		}
		return terms[name]
	}
	seen := map[string]bool{}
	runs := map[string]int{}
	for _, st := range steps {
		term := output(st.terminal)
		line := strings.ReplaceAll(st.command, "/tmp/guardyn", profiles)
		if strings.HasPrefix(line, "export ") {
			term.exports = append(term.exports, line)
			continue
		}
		key := st.terminal + ": " + st.command
		// A command the walkthrough runs a second time in a terminal has its own
		// expectation, named with " (again)".
		if runs[key]++; runs[key] == 2 {
			key += " (again)"
		}
		exp, ok := expect[key]
		if !ok {
			t.Fatalf("README command %q has no expectation in this test: add one", key)
		}
		seen[key] = true
		for _, w := range exp.waitFor {
			name, text, _ := strings.Cut(w, ": ")
			output(name).waitFor(t, regexp.MustCompile(regexp.QuoteMeta(text)))
		}
		if strings.Contains(line, "<message-id>") {
			m := output("terminal 1").waitFor(t, regexp.MustCompile(`guardyn get ([0-9a-f]{32})`))
			line = strings.ReplaceAll(line, "<message-id>", m[1])
		}
		if strings.Contains(line, "<link-id>") {
			m := output("terminal 3").waitFor(t, regexp.MustCompile(`guardyn approve (\S+)`))
			line = strings.ReplaceAll(line, "<link-id>", m[1])
		}
		term.waitIdle(t)
		script := strings.Join(append(append([]string{"set -e", "cd " + root}, term.exports...), line), "\n")
		if st.background {
			term.start(t, script, baseEnv, exp.want)
			continue
		}
		for attempt := 1; ; attempt++ {
			out, err := runScript(script, baseEnv)
			if err != nil {
				t.Fatalf("%s: %s: %v\n%s", st.terminal, st.command, err, out)
			}
			missing := missingPatterns(out, exp.want)
			if len(missing) == 0 {
				break
			}
			if !exp.retry || attempt == 10 {
				t.Fatalf("%s: %s: output lacks %q:\n%s", st.terminal, st.command, missing, out)
			}
			time.Sleep(time.Second)
		}
	}
	for key := range expect {
		if !seen[key] {
			t.Errorf("expectation for %q, which the README no longer has", key)
		}
	}
	// Every background command printed what it must, and the ones still running (bob's
	// listen) survived everything the other terminals did and stop cleanly on Ctrl-C.
	for _, term := range terms {
		term.finish(t)
	}
	// Stopping the server flushes its last spans.
	srv.stop()
	checkObservability(t, steps, serverLog.String(), collector.Spans())
}

// walkStep is one command of the walkthrough.
type walkStep struct {
	terminal, command string
	background        bool
}

// parseWalkthrough reads the shell blocks between <!-- walkthrough --> and
// <!-- /walkthrough -->. Each block starts with a comment naming its terminal; a command's
// trailing comment (two spaces and #) is dropped.
func parseWalkthrough(readme string) ([]walkStep, error) {
	_, rest, ok := strings.Cut(readme, "<!-- walkthrough -->")
	if !ok {
		return nil, fmt.Errorf("no <!-- walkthrough --> marker")
	}
	body, _, ok := strings.Cut(rest, "<!-- /walkthrough -->")
	if !ok {
		return nil, fmt.Errorf("no <!-- /walkthrough --> marker")
	}
	comment := regexp.MustCompile(`\s{2,}#\s*(.*)$`)
	var steps []walkStep
	inBlock, terminal := false, ""
	for _, line := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inBlock, terminal = true, ""
			continue
		case strings.HasPrefix(line, "```"):
			inBlock = false
			continue
		case !inBlock || strings.TrimSpace(line) == "":
			continue
		case terminal == "":
			name, ok := strings.CutPrefix(line, "# ")
			if !ok {
				return nil, fmt.Errorf("block starts with %q, not a # comment naming its terminal", line)
			}
			terminal, _, _ = strings.Cut(name, ":")
			terminal = strings.TrimSpace(terminal)
			if terminal == "" {
				return nil, fmt.Errorf("block comment %q names no terminal", line)
			}
			continue
		}
		st := walkStep{terminal: terminal, command: line}
		if m := comment.FindStringSubmatchIndex(line); m != nil {
			st.command = line[:m[0]]
			st.background = strings.HasPrefix(line[m[2]:m[3]], "keeps running")
		}
		steps = append(steps, st)
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("no commands")
	}
	return steps, nil
}

func runScript(script string, env []string) (string, error) {
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("still running after 3 minutes")
	}
}

func missingPatterns(out string, want []string) []string {
	var missing []string
	for _, w := range want {
		if !regexp.MustCompile(`(?m)` + w).MatchString(out) {
			missing = append(missing, w)
		}
	}
	return missing
}

// terminal is one of the walkthrough's terminals: its exports and the command holding it.
type terminal struct {
	name    string
	exports []string

	mu     sync.Mutex
	lines  []string
	cmd    *exec.Cmd
	want   []string
	script string
	exited chan struct{}
}

func (tm *terminal) start(t *testing.T, script string, env []string, want []string) {
	t.Helper()
	// exec replaces bash with the command, so Ctrl-C (SIGINT) reaches it as in a terminal.
	last := strings.LastIndex(script, "\n") + 1
	cmd := exec.Command("bash", "-c", script[:last]+"exec "+script[last:])
	cmd.Env = env
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	tm.cmd, tm.want, tm.script, tm.exited = cmd, want, script, make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			tm.mu.Lock()
			tm.lines = append(tm.lines, sc.Text())
			tm.mu.Unlock()
		}
	}()
	go func() {
		cmd.Wait()
		close(tm.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-tm.exited
	})
}

// waitFor waits until the terminal has printed a line matching re.
func (tm *terminal) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		tm.mu.Lock()
		for _, l := range tm.lines {
			if m := re.FindStringSubmatch(l); m != nil {
				tm.mu.Unlock()
				return m
			}
		}
		out := strings.Join(tm.lines, "\n")
		tm.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no line matching %s within 90 s:\n%s", tm.name, re, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitIdle waits for the command holding the terminal to end, as a person waits for the
// prompt to come back.
func (tm *terminal) waitIdle(t *testing.T) {
	t.Helper()
	if tm.cmd == nil {
		return
	}
	select {
	case <-tm.exited:
		tm.check(t)
		if code := tm.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("%s: %q exited %d:\n%s", tm.name, tm.script, code, tm.output())
		}
		tm.cmd = nil
	case <-time.After(90 * time.Second):
		t.Fatalf("%s: the command holding it did not end within 90 s:\n%s", tm.name, tm.output())
	}
}

// finish checks what a command still running printed, then stops it with Ctrl-C.
func (tm *terminal) finish(t *testing.T) {
	t.Helper()
	if tm.cmd == nil {
		return
	}
	select {
	case <-tm.exited:
		t.Fatalf("%s: %q ended while it should still be running:\n%s", tm.name, tm.script, tm.output())
	default:
	}
	for _, w := range tm.want {
		tm.waitFor(t, regexp.MustCompile(w))
	}
	tm.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-tm.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: did not stop on Ctrl-C within 10 s", tm.name)
	}
	if code := tm.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s: exited %d on Ctrl-C:\n%s", tm.name, code, tm.output())
	}
}

func (tm *terminal) check(t *testing.T) {
	t.Helper()
	if missing := missingPatterns(tm.output(), tm.want); len(missing) > 0 {
		t.Fatalf("%s: output lacks %q:\n%s", tm.name, missing, tm.output())
	}
}

func (tm *terminal) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return strings.Join(tm.lines, "\n")
}

// runningServer is a server binary started by startServerBinary.
type runningServer struct {
	addr string // gRPC
	stop func() // SIGTERM and wait; idempotent
}

// startServerBinary builds the all-in-one server and runs it on free loopback ports with a
// fresh data directory and extra flags, as the README's first command does, its log going
// to stderr.
func startServerBinary(t *testing.T, root string, stderr io.Writer, args ...string) runningServer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "guardyn-server")
	build := exec.Command("go", "build", "-o", bin, "./tools/devserver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build server: %v\n%s", err, out)
	}
	srv := exec.Command(bin, append([]string{"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0"}, args...)...)
	srv.Stderr = stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Process.Signal(syscall.SIGTERM)
			srv.Wait()
		})
	}
	t.Cleanup(stop)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		re := regexp.MustCompile(`gRPC on (\S+),`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return runningServer{addr: a, stop: stop}
	case <-time.After(90 * time.Second):
		t.Fatal("server did not start")
		return runningServer{}
	}
}

// TestListenAcrossServerRestart: a second listen of a profile is refused without touching
// the running one; when the server stops, the running listen says it is reconnecting
// (the server stops at once rather than waiting out its drain for the idle stream), and
// when the server is back it says so and goes on receiving.
func TestListenAcrossServerRestart(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	serverBin, cliBin := filepath.Join(dir, "guardyn-server"), filepath.Join(dir, "guardyn")
	for bin, pkg := range map[string]string{serverBin: "./tools/devserver", cliBin: "./apps/guardyn"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	data := filepath.Join(dir, "data")
	// A fixed port, so the restarted server is where the client looks: take a free one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	startServer := func() *exec.Cmd {
		srv := exec.Command(serverBin, "-data-dir", data, "-grpc-addr", addr, "-admin-addr", "127.0.0.1:0")
		out, err := srv.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "gRPC on") {
				go io.Copy(io.Discard, out)
				return srv
			}
		}
		t.Fatal("server did not start")
		return nil
	}
	c := &cli{bin: cliBin, server: addr, dir: dir}
	srv := startServer()
	c.ok(t, "bob", "register", "bob")
	c.ok(t, "alice", "register", "alice")
	listen, lines := c.background(t, "bob", "listen")
	waitLine(t, lines, regexp.MustCompile(`backlog done; listening`))

	_, errOut, code := c.run(t, "bob", "listen", "--once")
	if code != 1 || !strings.Contains(errOut, "another listen is already receiving for this profile") {
		t.Fatalf("second listen: exit %d, stderr %q", code, errOut)
	}
	c.ok(t, "alice", "send", "bob", "before the restart")
	waitLine(t, lines, regexp.MustCompile(`alice: before the restart$`))

	began := time.Now()
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("server took %v to stop with one idle listener (drain timeout 10 s)", took)
	}
	waitLine(t, lines, regexp.MustCompile(`connection lost: .*reconnecting`))
	startServer()
	waitLine(t, lines, regexp.MustCompile(`reconnected; listening again`))
	c.ok(t, "alice", "send", "bob", "after the restart")
	waitLine(t, lines, regexp.MustCompile(`alice: after the restart$`))
	listen.Process.Signal(syscall.SIGINT)
	if err := listen.Wait(); err != nil {
		t.Fatalf("listen on Ctrl-C: %v", err)
	}
}
