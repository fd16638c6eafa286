package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/auth"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// attackers holds the attackers' accounts, each an ordinary account registered like any
// other: nothing an attacker does needs more than a sign-up.
type attackers struct {
	jammers []*rawdevice.Device // one per victim

	filler  *rawdevice.Device   // sends the backlogs
	backlog []*rawdevice.Device // devices that hold them and reconnect

	grouper *rawdevice.Device
	sinks   []*rawdevice.Device // devices the group commits add

	loginOwn []*rawdevice.Device // accounts the login flood logs into with valid signatures

	drainers []*rawdevice.Device
}

// setupAttackers registers the accounts the chosen attacks need.
func setupAttackers(ctx context.Context, c authv1.AuthServiceClient, f abuseFlags, pairs []*pair) (*attackers, error) {
	a := &attackers{}
	run := time.Now().UnixNano() % 1e9
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	reg := func(dst *[]*rawdevice.Device, name string, n int) {
		for i := range n {
			g.Go(func() error {
				d, err := rawdevice.Register(gctx, c, fmt.Sprintf("%s%x_%d", name, run, i))
				if err != nil {
					return err
				}
				mu.Lock()
				*dst = append(*dst, d)
				mu.Unlock()
				return nil
			})
		}
	}
	var one []*rawdevice.Device
	var grouper []*rawdevice.Device
	if f.runs("jam") {
		reg(&a.jammers, "jam", f.jamVictims)
	}
	if f.runs("backlog") {
		reg(&one, "fill", 1)
		reg(&a.backlog, "bkl", f.backlogDevices)
	}
	if f.runs("groups") {
		reg(&grouper, "grp", 1)
		reg(&a.sinks, "sink", f.groupRecipients)
	}
	if f.runs("login") {
		reg(&a.loginOwn, "lgn", 8)
	}
	if f.runs("drain") {
		reg(&a.drainers, "drn", f.drainers)
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("register the attackers: %w", err)
	}
	if len(one) > 0 {
		a.filler = one[0]
	}
	if len(grouper) > 0 {
		a.grouper = grouper[0]
	}
	return a, nil
}

// run runs every chosen attack until ctx ends, counting each call's outcome in calls.
func (a *attackers) run(ctx context.Context, conn *grpc.ClientConn, f abuseFlags, pairs []*pair, calls *tally) {
	var wg sync.WaitGroup
	goAttack := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	msg := messagingv1.NewMessagingServiceClient(conn)
	authc := authv1.NewAuthServiceClient(conn)
	for i, j := range a.jammers {
		goAttack(func() { jam(ctx, msg, j, pairs[i].receiver, f, calls) })
	}
	if len(a.backlog) > 0 {
		goAttack(func() { reconnect(ctx, msg, a.backlog, f, calls) })
	}
	if a.grouper != nil {
		goAttack(func() { amplify(ctx, msg, a.grouper, a.sinks, f, calls) })
	}
	if len(a.loginOwn) > 0 {
		goAttack(func() { loginFlood(ctx, authc, a.loginOwn, pairs, f, calls) })
	}
	for _, d := range a.drainers {
		goAttack(func() { drainKeys(ctx, authc, d, pairs, f, calls) })
	}
	wg.Wait()
}

// tally counts attacker calls by attack and outcome.
type tally struct {
	mu     sync.Mutex
	counts map[string]map[string]int
}

func newTally() *tally { return &tally{counts: map[string]map[string]int{}} }

func (t *tally) add(attack, outcome string) { t.addN(attack, outcome, 1) }

func (t *tally) addN(attack, outcome string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.counts[attack]
	if m == nil {
		m = map[string]int{}
		t.counts[attack] = m
	}
	m[outcome] += n
}

func (t *tally) names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for k := range t.counts {
		out = append(out, k)
	}
	// Names start with the item number of issue 18: order by it.
	item := func(s string) (n int) {
		fmt.Sscanf(s, "%d", &n)
		return n
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := item(a) - item(b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}

func (t *tally) get(attack string) map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]int{}
	for k, v := range t.counts[attack] {
		out[k] = v
	}
	return out
}

// countCall tallies a call's outcome; a call still running when the attack phase ended
// counts as such (a slow call is a finding too).
func countCall(ctx context.Context, calls *tally, attack string, err error) {
	if err != nil && ctx.Err() != nil {
		calls.add(attack, "cut off at the end of the phase")
		return
	}
	calls.add(attack, outcome(err))
}

// sendBurst sends payloads to the listed devices over one SendStream and counts each
// send's outcome; it returns when every send has been answered or the stream broke.
func sendBurst(ctx context.Context, c messagingv1.MessagingServiceClient, from *rawdevice.Device, attack string, reqs []*messagingv1.SendMessageRequest, calls *tally) {
	stream, err := c.SendStream(from.Context(ctx))
	if err != nil {
		countCall(ctx, calls, attack, err)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range reqs {
			resp, err := stream.Recv()
			if err != nil {
				countCall(ctx, calls, attack, err)
				return
			}
			if e := resp.GetError(); e != nil {
				calls.add(attack, e.GetReason())
			} else {
				calls.add(attack, "ok")
			}
		}
	}()
	for i, req := range reqs {
		if stream.Send(&messagingv1.SendStreamRequest{RequestId: uint64(i + 1), Message: req}) != nil {
			break // the reader sees why
		}
	}
	stream.CloseSend()
	<-done
}

// jam is item 1: every interval, queue a burst of the largest envelopes for an honest
// receiver. Before responses were bounded by bytes, 20 of them made every Receive of the
// victim fail at the same response, for good.
func jam(ctx context.Context, c messagingv1.MessagingServiceClient, attacker, victim *rawdevice.Device, f abuseFlags, calls *tally) {
	payload := make([]byte, f.jamSize)
	for ctx.Err() == nil {
		reqs := make([]*messagingv1.SendMessageRequest, f.jamBurst)
		for i := range reqs {
			reqs[i] = rawdevice.SendRequest(victim.UserID, payload, victim.ID)
		}
		sendBurst(ctx, c, attacker, "1 jam: send", reqs, calls)
		if !sleepCtx(ctx, f.jamInterval) {
			return
		}
	}
}

// fill queues the memory attack's backlogs, before the measured phases: how fast one
// account can push bytes into the store is the jam's part; this attack is about what the
// server does with a backlog that is there.
func (a *attackers) fill(ctx context.Context, conn *grpc.ClientConn, f abuseFlags, calls *tally) {
	if a.filler == nil {
		return
	}
	c := messagingv1.NewMessagingServiceClient(conn)
	payload := make([]byte, f.backlogSize)
	for _, d := range a.backlog {
		reqs := make([]*messagingv1.SendMessageRequest, f.backlogMsgs)
		for i := range reqs {
			reqs[i] = rawdevice.SendRequest(d.UserID, payload, d.ID)
		}
		sendBurst(ctx, c, a.filler, "2 backlog: fill (setup)", reqs, calls)
	}
}

// reconnect is item 2: each device that holds a large backlog opens Receive, reads and
// drops the stream, again and again, never acknowledging, so that the server reads the
// backlog over and over.
func reconnect(ctx context.Context, c messagingv1.MessagingServiceClient, devices []*rawdevice.Device, f abuseFlags, calls *tally) {
	var wg sync.WaitGroup
	for _, d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lim := rate.NewLimiter(rate.Limit(f.reconnectRate), 1)
			for lim.Wait(ctx) == nil {
				calls.add("2 backlog: reconnect", readAndDrop(ctx, c, d))
			}
		}()
	}
	wg.Wait()
}

// readAndDrop opens a Receive stream, reads until the backlog is complete or for a few
// responses, and drops the stream without acknowledging anything: a server that waits for
// acknowledgements before sending more would otherwise hold each attacker on one stream.
// It accepts responses of any size: what fails is the server's doing.
func readAndDrop(ctx context.Context, c messagingv1.MessagingServiceClient, d *rawdevice.Device) string {
	sctx, cancel := context.WithTimeout(d.Context(ctx), 3*time.Second)
	defer cancel()
	stream, err := c.Receive(sctx, grpc.MaxCallRecvMsgSize(64<<20))
	if err != nil {
		return outcome(err)
	}
	for n := 1; ; n++ {
		resp, err := stream.Recv()
		switch {
		case err != nil && ctx.Err() != nil:
			return "cut off at the end of the phase"
		case err != nil && sctx.Err() != nil:
			return fmt.Sprintf("dropped after %d responses in 3 s", n-1)
		case err != nil:
			return outcome(err)
		case resp.GetBacklogComplete():
			return "ok, read the whole backlog"
		case n == 4:
			return "ok, dropped after 4 responses"
		}
	}
}

// amplify is item 3: every interval, create a group and commit to it once, adding many
// devices with a Welcome of the largest size. The commit is well formed as far as the
// Delivery Service can see (a PrivateMessage of the group and epoch carrying a commit, a
// Welcome naming one KeyPackageRef per added device, the recipients exactly the added
// devices): an attacker needs no more, since the rest is ciphertext.
func amplify(ctx context.Context, c messagingv1.MessagingServiceClient, attacker *rawdevice.Device, sinks []*rawdevice.Device, f abuseFlags, calls *tally) {
	self := &commonv1.DeviceAddress{UserId: attacker.UserID, DeviceId: attacker.ID}
	var added []*commonv1.DeviceAddress
	var refs [][]byte
	for i, s := range sinks {
		added = append(added, &commonv1.DeviceAddress{UserId: s.UserID, DeviceId: s.ID})
		refs = append(refs, mlsframe.Ref(i))
	}
	welcome := mlsframe.PaddedWelcome(f.welcomeSize, refs...)
	groupInfo := make([]byte, 1024)
	rand.Read(groupInfo)
	for ctx.Err() == nil {
		start := time.Now()
		gid := rawdevice.NewMessageID()
		_, err := c.CreateGroup(attacker.Context(ctx), &messagingv1.CreateGroupRequest{GroupId: gid, Members: []*commonv1.DeviceAddress{self}, GroupInfo: groupInfo})
		countCall(ctx, calls, "3 groups: create", err)
		if err == nil {
			_, err = c.SubmitCommit(attacker.Context(ctx), &messagingv1.SubmitCommitRequest{
				GroupId: gid, Epoch: 0, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 1024), GroupInfo: groupInfo,
				Welcome: welcome, WelcomeRecipients: added, Added: added,
			})
			countCall(ctx, calls, "3 groups: commit", err)
		}
		if !sleepCtx(ctx, f.groupInterval-time.Since(start)) {
			return
		}
	}
}

// loginFlood is item 8: log in as fast as the flood rate, alternating a wrong signature
// for an honest user (a guess) and a valid one for one of the attacker's own accounts,
// which makes the server do the work of a real login.
func loginFlood(ctx context.Context, c authv1.AuthServiceClient, own []*rawdevice.Device, pairs []*pair, f abuseFlags, calls *tally) {
	wrong, err := keys.GenerateIdentity()
	if err != nil {
		calls.add("8 login", "setup: "+err.Error())
		return
	}
	lim := rate.NewLimiter(rate.Limit(f.loginRate), 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lim.Wait(ctx) == nil {
				mu.Lock()
				i := n
				n++
				mu.Unlock()
				if i%2 == 0 {
					target := pairs[(i/2)%len(pairs)].receiver
					tryLogin(ctx, c, target.Username, target.ID, wrong, "8 login: wrong signature", calls)
				} else {
					d := own[(i/2)%len(own)]
					tryLogin(ctx, c, d.Username, d.ID, d.Identity, "8 login: valid signature", calls)
				}
			}
		}()
	}
	wg.Wait()
}

// tryLogin asks for a challenge and answers it signed with id, counting where it ended.
func tryLogin(ctx context.Context, c authv1.AuthServiceClient, username string, device uint32, id *keys.Identity, attack string, calls *tally) {
	ch, err := c.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: username, DeviceId: device})
	if err != nil {
		countCall(ctx, calls, attack+" (challenge)", err)
		return
	}
	sig, err := id.Sign(keys.ContextLoginChallenge, auth.LoginStatement(username, device, ch.GetNonce()))
	if err != nil {
		calls.add(attack, "sign: "+err.Error())
		return
	}
	_, err = c.Login(ctx, &authv1.LoginRequest{Username: username, DeviceId: device, Nonce: ch.GetNonce(), Signature: sig})
	countCall(ctx, calls, attack, err)
}

// drainKeys is item 10: claim the honest receivers' one-time prekeys and key packages in
// a loop, alternating GetKeyBundles and ClaimKeyPackages, round robin over the targets.
func drainKeys(ctx context.Context, c authv1.AuthServiceClient, drainer *rawdevice.Device, pairs []*pair, f abuseFlags, calls *tally) {
	lim := rate.NewLimiter(rate.Limit(f.drainRate), 1)
	for i := 0; lim.Wait(ctx) == nil; i++ {
		target := pairs[(i/2)%len(pairs)].receiver
		if i%2 == 0 {
			resp, err := c.GetKeyBundles(drainer.Context(ctx), &authv1.GetKeyBundlesRequest{UserId: target.UserID})
			switch {
			case err != nil:
				countCall(ctx, calls, "10 drain: bundles", err)
			case len(resp.GetBundles()) == 1 && resp.GetBundles()[0].GetOneTimeEcPrekey() != nil:
				calls.add("10 drain: bundles", "ok, one-time prekey claimed")
			default:
				calls.add("10 drain: bundles", "ok, no one-time prekey")
			}
		} else {
			resp, err := c.ClaimKeyPackages(drainer.Context(ctx), &authv1.ClaimKeyPackagesRequest{UserId: target.UserID})
			switch {
			case err != nil:
				countCall(ctx, calls, "10 drain: key packages", err)
			case len(resp.GetKeyPackages()) > 0:
				calls.add("10 drain: key packages", "ok, key package claimed")
			default:
				calls.add("10 drain: key packages", "ok, none left")
			}
		}
	}
}
