package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
)

// abuseFlags shape the abuse scenario: the honest load, and each attack of issue 18 that
// it runs (items 1, 2, 3, 8 and 10).
type abuseFlags struct {
	args []string // as given, for the attacker process

	server     serverFlags
	rateLimits bool
	attacks    string
	// inProcess runs the attackers in the scenario's own process, as before they had one
	// of their own: their client work then shares the honest clients' Go scheduler.
	inProcess bool

	pairs, inflight, size   int
	rounds                  int
	warmup, duration, drain time.Duration
	prekeys, keyPackages    int

	jamVictims, jamBurst, jamSize int
	jamInterval                   time.Duration

	backlogDevices, backlogMsgs, backlogSize int
	reconnectRate                            float64

	groupRecipients, welcomeSize int
	groupInterval                time.Duration

	loginRate float64

	drainers  int
	drainRate float64
}

// allAttacks names the attacks in the order they are reported.
var allAttacks = []string{"jam", "backlog", "groups", "login", "drain"}

func (f *abuseFlags) register(fs *flag.FlagSet) {
	f.server.register(fs)
	fs.BoolVar(&f.rateLimits, "rate-limits", true, "run the measured phases with the server's production rate limits (accounts are registered before, with limits off; ignored with -server)")
	fs.BoolVar(&f.inProcess, "attackers-in-process", false, "run the attackers in loadgen's own process, beside the honest clients, instead of a process of their own (whose CPU is reported apart)")
	fs.StringVar(&f.attacks, "attacks", strings.Join(allAttacks, ","), "attacks to run in the attack phase, comma-separated: "+strings.Join(allAttacks, ", "))
	fs.IntVar(&f.pairs, "pairs", 32, "honest sender/receiver pairs chatting through both phases")
	fs.IntVar(&f.inflight, "inflight", 2, "messages each honest sender keeps in flight end to end")
	fs.IntVar(&f.size, "size", 256, "honest envelope size in bytes")
	fs.DurationVar(&f.warmup, "warmup", 3*time.Second, "honest load before the quiet phase")
	fs.IntVar(&f.rounds, "rounds", 3, "rounds of a quiet window followed by an attack window; interleaving them spreads the machine's noise over both")
	fs.DurationVar(&f.duration, "duration", 6*time.Second, "length of each window (quiet or attack) of a round")
	fs.DurationVar(&f.drain, "drain", 15*time.Second, "after the attack, how long the honest receivers may take to get what is still in flight")
	fs.IntVar(&f.prekeys, "prekeys", 100, "one-time prekeys of each kind each honest receiver uploads (for the drain attack to drain)")
	fs.IntVar(&f.keyPackages, "key-packages", 100, "MLS key packages each honest receiver uploads")
	// 1: inbox jam.
	fs.IntVar(&f.jamVictims, "jam-victims", 2, "jam: honest receivers whose inboxes an attacker fills with large envelopes")
	fs.IntVar(&f.jamBurst, "jam-burst", 32, "jam: envelopes queued for each victim at once")
	fs.IntVar(&f.jamSize, "jam-size", 256<<10, "jam: bytes per envelope (the API's maximum is 256 KiB)")
	fs.DurationVar(&f.jamInterval, "jam-interval", time.Second, "jam: time between bursts")
	// 2: memory.
	fs.IntVar(&f.backlogDevices, "backlog-devices", 16, "backlog: attacker devices that each get a large backlog and reconnect in a loop without acknowledging")
	fs.IntVar(&f.backlogMsgs, "backlog-msgs", 32, "backlog: messages queued for each of those devices")
	fs.IntVar(&f.backlogSize, "backlog-size", 256<<10, "backlog: bytes per message")
	fs.Float64Var(&f.reconnectRate, "reconnect-rate", 5, "backlog: Receive reconnects per second per device")
	// 3: delivery-service amplification.
	fs.IntVar(&f.groupRecipients, "group-recipients", 32, "groups: devices each commit adds and sends the Welcome to")
	fs.IntVar(&f.welcomeSize, "welcome-size", 1<<20, "groups: bytes of each commit's Welcome (the API's maximum is 1 MiB)")
	fs.DurationVar(&f.groupInterval, "group-interval", time.Second, "groups: time between new groups, each created and then committed to once")
	// 8: login floods.
	fs.Float64Var(&f.loginRate, "login-rate", 100, "login: login attempts per second, alternating a wrong signature for an honest user and a valid one for the attacker's own account")
	// 10: key draining.
	fs.IntVar(&f.drainers, "drainers", 2, "drain: attacker accounts claiming the honest receivers' prekeys and key packages")
	fs.Float64Var(&f.drainRate, "drain-rate", 50, "drain: calls per second of each drainer, alternating GetKeyBundles and ClaimKeyPackages over the honest receivers")
}

func (f *abuseFlags) validate() error {
	switch {
	case f.pairs < 1 || f.inflight < 1:
		return errors.New("-pairs and -inflight must be at least 1")
	case f.size < honestHeader:
		return fmt.Errorf("-size must be at least %d bytes", honestHeader)
	case f.jamVictims > f.pairs:
		return errors.New("-jam-victims cannot exceed -pairs")
	case f.duration <= 0 || f.rounds < 1:
		return errors.New("-duration must be positive and -rounds at least 1")
	case f.prekeys > 100:
		return errors.New("-prekeys is at most 100 (one upload)")
	case f.keyPackages > 100:
		return errors.New("-key-packages is at most 100 (one upload)")
	}
	for _, a := range f.attackList() {
		if !slices.Contains(allAttacks, a) {
			return fmt.Errorf("unknown attack %q (known: %s)", a, strings.Join(allAttacks, ", "))
		}
	}
	return nil
}

func (f *abuseFlags) attackList() []string {
	var out []string
	for _, a := range strings.Split(f.attacks, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func (f *abuseFlags) runs(attack string) bool { return slices.Contains(f.attackList(), attack) }

func parseAbuseFlags(args []string) (abuseFlags, error) {
	f := abuseFlags{args: args}
	fs := flag.NewFlagSet("abuse", flag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	return f, f.validate()
}

func runAbuse(ctx context.Context, args []string, out io.Writer) error {
	f, err := parseAbuseFlags(args)
	if err != nil {
		return err
	}
	rep, err := abuse(ctx, f, out)
	if err != nil {
		return err
	}
	if n := rep.lost(); n > 0 {
		return fmt.Errorf("%d honest messages were stored but never delivered", n)
	}
	return nil
}

// Phases of the run. Honest figures are kept per phase; attacks run in phaseAttack only.
const (
	phaseWarmup = iota
	phaseQuiet
	phaseAttack
	phaseDrain
	phaseCount
)

var phaseNames = [phaseCount]string{"warm-up", "quiet", "attack", "drain"}

// phaseStats is what one phase measured, over all its windows.
type phaseStats struct {
	windows   int
	elapsed   time.Duration
	serverCPU time.Duration // -1: not measured
	selfCPU   time.Duration
	// serverWait and selfWait are the time the processes' threads were runnable but
	// waiting for a CPU of the shared machine (-1: not measured).
	serverWait time.Duration
	selfWait   time.Duration
	// attackerCPU is the attacker process's CPU (-1: the attackers ran in loadgen's
	// process and selfCPU includes them).
	attackerCPU time.Duration
	rssMax      int64 // 0: not measured
	rssEnd      int64
	keyBundles  probeResult
	keyPkgs     probeResult
}

// probeResult counts honest key fetches and what they got.
type probeResult struct{ total, served int }

// abuseReport is the outcome of a run, for the test and the exit status.
type abuseReport struct {
	honest *honestLoad
	phases [phaseCount]phaseStats
	calls  *tally
	left   leftover // what a fresh Receive found in the honest inboxes after the run
}

func (r *abuseReport) lost() int {
	n := 0
	for _, l := range r.honest.lostByPhase() {
		n += l
	}
	return n
}

// abuse runs the scenario: setup, a quiet phase of honest pairs only, an attack phase with
// the same honest load and the attackers, then a drain; and prints the report to out.
func abuse(ctx context.Context, f abuseFlags, out io.Writer) (*abuseReport, error) {
	raiseFileLimit()
	addr := f.server.addr
	var srv *child
	if addr == "" {
		var err error
		if srv, err = f.server.start(ctx); err != nil {
			return nil, err
		}
		defer srv.stop()
		addr = srv.addr
	}

	fmt.Fprintf(out, "loadgen abuse: registering %d honest pairs and the attackers…\n", f.pairs)
	setupConns := newConnPool(addr, 0)
	pairs, err := setupPairs(ctx, setupConns, f.pairs)
	if err != nil {
		setupConns.Close()
		return nil, err
	}
	setupConn, err := setupConns.get()
	if err != nil {
		setupConns.Close()
		return nil, err
	}
	rep := &abuseReport{calls: newTally()}
	var att *attackers
	var proc *attackerProc
	if f.inProcess {
		att, err = setupAttackers(ctx, authv1.NewAuthServiceClient(setupConn), f, pairs)
	} else {
		if proc, err = startAttackerProc(f.args); err != nil {
			setupConns.Close()
			return nil, err
		}
		defer proc.stop()
	}
	if err == nil {
		err = uploadHonestKeys(ctx, setupConns, pairs, f.prekeys, f.keyPackages)
	}
	if err == nil && f.runs("backlog") {
		fmt.Fprintf(out, "loadgen abuse: queueing the memory attack's backlogs (%s)…\n", bytesString(int64(f.backlogDevices*f.backlogMsgs*f.backlogSize)))
	}
	if err == nil && att != nil {
		att.fill(ctx, setupConn, f, rep.calls)
	}
	if err == nil && proc != nil {
		// The attacker process registers its accounts and queues the backlogs itself.
		_, err = proc.call(attackMsg{Cmd: "setup", Addr: addr, Targets: targetsOf(pairs)})
	}
	setupConns.Close()
	if err != nil {
		return nil, err
	}
	limits := "off"
	if srv != nil && f.rateLimits {
		if err := srv.restart(true); err != nil {
			return nil, fmt.Errorf("restart the server with rate limits: %w", err)
		}
		addr = srv.addr
		limits = "on (the production policy; accounts were registered before, with limits off)"
	} else if srv == nil {
		limits = "as the running server has them"
	}

	conns := newConnPool(addr, 0)
	defer conns.Close()
	for _, p := range pairs {
		if p.conn, err = conns.get(); err != nil {
			return nil, err
		}
		if p.rconn, err = conns.get(); err != nil {
			return nil, err
		}
	}
	var attack func(context.Context, time.Duration) // runs the attacks for one window
	if att != nil {
		attackConn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		defer attackConn.Close()
		attack = func(actx context.Context, _ time.Duration) { att.run(actx, attackConn, f, pairs, rep.calls) }
	} else {
		attack = func(actx context.Context, d time.Duration) {
			if _, err := proc.call(attackMsg{Cmd: "attack", Addr: addr, Duration: d}); err != nil {
				rep.calls.add("attacker process", err.Error())
			}
		}
	}

	fmt.Fprintf(out, "loadgen abuse: %d honest pairs × %d in flight, %d-byte envelopes, rate limits %s, server %s\n", f.pairs, f.inflight, f.size, limits, addr)
	fmt.Fprintf(out, "%d rounds of a %v quiet window then a %v attack window\n", f.rounds, f.duration, f.duration)
	where := "in a process of their own"
	if f.inProcess {
		where = "in loadgen's process"
	}
	fmt.Fprintf(out, "attacks (%s): %s\n", where, f.describeAttacks())

	honest := newHonestLoad(pairs, f.inflight, f.size)
	rep.honest = honest
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := honest.start(runCtx); err != nil {
		return nil, err
	}

	var sampler *rssSampler
	if srv != nil {
		sampler = startRSSSampler(runCtx, srv, 250*time.Millisecond)
	}
	for i := range rep.phases {
		rep.phases[i].serverCPU, rep.phases[i].serverWait, rep.phases[i].selfWait, rep.phases[i].attackerCPU = -1, -1, -1, -1
	}
	// measure runs one window of a phase and adds what it measured to the phase's figures.
	measure := func(phase int, d time.Duration, probe bool, during func(context.Context)) error {
		honest.setPhase(phase)
		st := &rep.phases[phase]
		var cpu0, wait0 time.Duration
		cpuErr, waitErr := errors.New("no child"), errors.New("no child")
		if srv != nil {
			cpu0, cpuErr = srv.cpu()
			wait0, waitErr = schedWait(srv.cmd.Process.Pid)
			sampler.reset()
		}
		self0 := selfCPU()
		selfWait0, selfWaitErr := schedWait(0)
		att0, attErr := time.Duration(0), errors.New("no attacker process")
		if proc != nil {
			att0, attErr = procCPU(proc.pid())
		}
		start := time.Now()
		phaseCtx, endPhase := context.WithTimeout(runCtx, d)
		defer endPhase()
		var wg sync.WaitGroup
		if during != nil {
			wg.Add(1)
			go func() { defer wg.Done(); during(phaseCtx) }()
		}
		// Halfway through, every honest sender fetches its receiver's key bundle and
		// claims a key package, as someone starting a conversation or a group would. The
		// window waits for the answers, however slow.
		if probe {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-time.After(d / 2):
					st.keyBundles, st.keyPkgs = probeKeys(runCtx, pairs)
				case <-phaseCtx.Done():
				}
			}()
		}
		<-phaseCtx.Done()
		wg.Wait()
		st.windows++
		st.elapsed += time.Since(start)
		st.selfCPU += selfCPU() - self0
		if w, err := schedWait(0); err == nil && selfWaitErr == nil {
			st.selfWait = max(st.selfWait, 0) + w - selfWait0
		}
		if proc != nil {
			if c, err := procCPU(proc.pid()); err == nil && attErr == nil {
				st.attackerCPU = max(st.attackerCPU, 0) + c - att0
			}
		}
		if srv != nil {
			if cpu, err := srv.cpu(); err == nil && cpuErr == nil {
				st.serverCPU = max(st.serverCPU, 0) + cpu - cpu0
			}
			if w, err := schedWait(srv.cmd.Process.Pid); err == nil && waitErr == nil {
				st.serverWait = max(st.serverWait, 0) + w - wait0
			}
			st.rssMax = max(st.rssMax, sampler.max())
			st.rssEnd, _ = srv.rss()
		}
		return ctx.Err()
	}

	if err := measure(phaseWarmup, f.warmup, false, nil); err != nil {
		return nil, err
	}
	for round := range f.rounds {
		last := round == f.rounds-1 // the honest key probes run once per phase, in the last round
		if err := measure(phaseQuiet, f.duration, last, nil); err != nil {
			return nil, err
		}
		if err := measure(phaseAttack, f.duration, last, func(actx context.Context) {
			attack(actx, f.duration)
		}); err != nil {
			return nil, err
		}
	}

	// Stop sending, and give the receivers the drain time to get what is in flight.
	honest.setPhase(phaseDrain)
	drainStart := time.Now()
	honest.stopSending()
	for deadline := time.Now().Add(f.drain); honest.inFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	rep.phases[phaseDrain].elapsed = time.Since(drainStart)
	time.Sleep(500 * time.Millisecond) // for the last acknowledgements to reach the server
	cancel()
	honest.wait()
	if proc != nil {
		calls, err := proc.report()
		if err != nil {
			return nil, err
		}
		for a, m := range calls {
			for o, n := range m {
				rep.calls.addN(a, o, n)
			}
		}
	}
	rep.left = honestLeftInInboxes(ctx, pairs)
	rep.print(out, f, rep.left)
	return rep, nil
}

func (f *abuseFlags) describeAttacks() string {
	var parts []string
	for _, a := range f.attackList() {
		switch a {
		case "jam":
			parts = append(parts, fmt.Sprintf("jam (%d victims, %d × %s every %v)", f.jamVictims, f.jamBurst, bytesString(int64(f.jamSize)), f.jamInterval))
		case "backlog":
			parts = append(parts, fmt.Sprintf("backlog (%d devices holding %d × %s each, queued before the quiet phase, reconnecting %g/s without acks)", f.backlogDevices, f.backlogMsgs, bytesString(int64(f.backlogSize)), f.reconnectRate))
		case "groups":
			parts = append(parts, fmt.Sprintf("groups (a %s Welcome to %d added devices every %v)", bytesString(int64(f.welcomeSize)), f.groupRecipients, f.groupInterval))
		case "login":
			parts = append(parts, fmt.Sprintf("login (%g/s)", f.loginRate))
		case "drain":
			parts = append(parts, fmt.Sprintf("drain (%d callers × %g/s)", f.drainers, f.drainRate))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (r *abuseReport) print(out io.Writer, f abuseFlags, left leftover) {
	h := r.honest
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\thonest msg/s\tp50\tp99\tmax\tstored p99\tdelivered\tduplicates\tsends refused\treceive errors\tjunk received\tserver CPU\tserver CPU wait\tloadgen CPU\tloadgen CPU wait\tattackers CPU\tserver RSS max\t")
	for _, ph := range []int{phaseQuiet, phaseAttack} {
		st := r.phases[ph]
		hs := h.snapshot(ph)
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t%v\t%v\t%d\t%d\t%d\t%d\t%d (%s)\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			phaseNames[ph], float64(hs.delivered)/st.elapsed.Seconds(),
			hs.pct(0.50), hs.pct(0.99), hs.pct(1), percentile(hs.storeLatencies, 0.99), hs.delivered, hs.duplicates,
			sum(hs.refused), sum(hs.recvErrors), hs.junk, bytesString(hs.junkBytes),
			cores(st.serverCPU, st.elapsed), cores(st.serverWait, st.elapsed), cores(st.selfCPU, st.elapsed), cores(st.selfWait, st.elapsed), cores(st.attackerCPU, st.elapsed), mibString(st.rssMax))
	}
	tw.Flush()
	quiet, attack := r.phases[phaseQuiet], r.phases[phaseAttack]
	qr := float64(h.snapshot(phaseQuiet).delivered) / quiet.elapsed.Seconds()
	ar := float64(h.snapshot(phaseAttack).delivered) / attack.elapsed.Seconds()
	verdict := "within the 20% target"
	if qr == 0 || ar/qr < 0.8 {
		verdict = "BELOW the 80% target"
	}
	ratio := 0.0
	if qr > 0 {
		ratio = ar / qr
	}
	fmt.Fprintf(out, "honest throughput under attack / quiet: %.2f (%s)\n", ratio, verdict)
	// On a shared machine the server gets what the others leave it, and the attackers'
	// clients are among the others: per CPU second the server used, the ratio says how
	// the server divided what it got between honest and attacker work.
	if quiet.serverCPU > 0 && attack.serverCPU > 0 && qr > 0 {
		qe := float64(h.snapshot(phaseQuiet).delivered) / quiet.serverCPU.Seconds()
		ae := float64(h.snapshot(phaseAttack).delivered) / attack.serverCPU.Seconds()
		fmt.Fprintf(out, "honest messages per server CPU second: quiet %.0f, attack %.0f, ratio %.2f\n", qe, ae, ae/qe)
	}
	lost := h.lostByPhase()
	fmt.Fprintf(out, "honest messages stored but never delivered: %d (sent in warm-up %d, quiet %d, attack %d); unconfirmed sends (stream broke before the answer, not delivered): %d\n",
		lost[phaseWarmup]+lost[phaseQuiet]+lost[phaseAttack]+lost[phaseDrain], lost[phaseWarmup], lost[phaseQuiet], lost[phaseAttack], h.unconfirmed())
	if left.err != nil {
		fmt.Fprintf(out, "after the run, the honest receivers' inboxes could not all be read: %v\n", left.err)
	}
	fmt.Fprintf(out, "after the run: %d honest messages and %d attacker messages left in the honest receivers' inboxes (%d unreadable)\n", left.honest, left.junk, left.unreadable)
	for _, ph := range []int{phaseQuiet, phaseAttack} {
		hs := h.snapshot(ph)
		if len(hs.refused) > 0 {
			fmt.Fprintf(out, "%s: honest sends refused: %s\n", phaseNames[ph], countsString(hs.refused))
		}
		if len(hs.recvErrors) > 0 {
			fmt.Fprintf(out, "%s: honest Receive streams broken: %s\n", phaseNames[ph], countsString(hs.recvErrors))
		}
		st := r.phases[ph]
		fmt.Fprintf(out, "%s: honest key fetches: %d/%d bundles with one-time prekeys, %d/%d key-package claims served; server RSS at the end %s\n",
			phaseNames[ph], st.keyBundles.served, st.keyBundles.total, st.keyPkgs.served, st.keyPkgs.total, mibString(st.rssEnd))
	}
	fmt.Fprintln(out, "attacker calls (outcome: count):")
	for _, a := range r.calls.names() {
		fmt.Fprintf(out, "  %-18s %s\n", a, countsString(r.calls.get(a)))
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func countsString(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func cores(cpu, elapsed time.Duration) string {
	if cpu < 0 || elapsed <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", cpu.Seconds()/elapsed.Seconds())
}

func mibString(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func bytesString(b int64) string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", b>>10)
	default:
		return fmt.Sprintf("%d B", b)
	}
}

// selfCPU is the CPU time the load generator has used: its share of the two cores is
// taken from the server, so the report shows it next to the server's.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssSampler records the largest resident memory of the server since the last reset.
type rssSampler struct {
	peak atomic.Int64
}

func startRSSSampler(ctx context.Context, srv *child, every time.Duration) *rssSampler {
	s := &rssSampler{}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if rss, err := srv.rss(); err == nil {
				for {
					old := s.peak.Load()
					if rss <= old || s.peak.CompareAndSwap(old, rss) {
						break
					}
				}
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

func (s *rssSampler) reset()     { s.peak.Store(0) }
func (s *rssSampler) max() int64 { return s.peak.Load() }

// probeKeys has every honest sender fetch its receiver's key bundle and claim one of its
// key packages, and counts how many got one-time prekeys and a key package.
func probeKeys(ctx context.Context, pairs []*pair) (bundles, kps probeResult) {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, p := range pairs {
		g.Go(func() error {
			c := authv1.NewAuthServiceClient(p.conn)
			b, berr := c.GetKeyBundles(p.sender.Context(gctx), &authv1.GetKeyBundlesRequest{UserId: p.receiver.UserID})
			k, kerr := c.ClaimKeyPackages(p.sender.Context(gctx), &authv1.ClaimKeyPackagesRequest{UserId: p.receiver.UserID})
			if gctx.Err() != nil {
				return nil // the run was interrupted: not a result
			}
			mu.Lock()
			defer mu.Unlock()
			bundles.total++
			if berr == nil && len(b.GetBundles()) == 1 && b.GetBundles()[0].GetOneTimeEcPrekey() != nil && !b.GetBundles()[0].GetKemPrekeyIsLastResort() {
				bundles.served++
			}
			kps.total++
			if kerr == nil && len(k.GetKeyPackages()) == 1 {
				kps.served++
			}
			return nil
		})
	}
	g.Wait()
	return bundles, kps
}

// uploadHonestKeys gives every honest receiver a signed prekey, a last-resort ML-KEM
// prekey, n one-time prekeys of each kind and kps key packages, so that the drain attack
// has something to drain and the honest key fetches something to get.
func uploadHonestKeys(ctx context.Context, conns *connPool, pairs []*pair, n, kps int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, p := range pairs {
		g.Go(func() error {
			c := authv1.NewAuthServiceClient(p.rconn)
			req, err := preKeyUpload(p.receiver, n)
			if err != nil {
				return err
			}
			if _, err := c.UploadPreKeys(p.receiver.Context(gctx), req); err != nil {
				return fmt.Errorf("upload prekeys: %w", err)
			}
			if kps == 0 {
				return nil
			}
			up := &authv1.UploadKeyPackagesRequest{}
			for k := range kps {
				up.KeyPackages = append(up.KeyPackages, fmt.Appendf(nil, "key package %d of honest receiver %d", k, i))
			}
			if _, err := c.UploadKeyPackages(p.receiver.Context(gctx), up); err != nil {
				return fmt.Errorf("upload key packages: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// leftover is what a fresh Receive finds in the honest receivers' inboxes after the run.
type leftover struct {
	honest, junk, unreadable int
	err                      error
}

// honestLeftInInboxes reads every honest receiver's backlog on a new stream, without
// acknowledging, and counts what is still there.
func honestLeftInInboxes(ctx context.Context, pairs []*pair) leftover {
	var l leftover
	for _, p := range pairs {
		h, j, err := readBacklog(ctx, p)
		l.honest += h
		l.junk += j
		if err != nil {
			l.unreadable++
			if l.err == nil {
				l.err = err
			}
		}
	}
	return l
}
