// Command loadgen measures the Guardyn platform end to end: it starts the all-in-one
// server as a child process on a fresh data dir (or targets a running one), drives
// simulated devices through the real gRPC API on loopback, and reports delivered
// messages per second, end-to-end latency percentiles and the server's memory.
//
//	go run ./tools/loadgen throughput -senders 64 -duration 20s
//	go run ./tools/loadgen open -devices 10000 -rate 15000
//	go run ./tools/loadgen open -rate 5000,10000,15000,20000 -svg curve.svg
//	go run ./tools/loadgen idle -devices 10000
//	go run ./tools/loadgen backlog
//	go run ./tools/loadgen abuse
//
// throughput: each sender streams 1:1 messages (SendStream) to its own receiver, which
// reads its Receive stream and acknowledges each batch on it; a message counts when it is
// acknowledged, its latency runs from just before the send to its arrival on the
// receiving device, and repeated deliveries are counted. It also reports the server's CPU
// per message.
// open: N connected devices send to random contacts at an aggregate Poisson rate, open
// loop: a send's latency runs from the time it was scheduled, so a slow server delays no
// later send and hides no queueing (no coordinated omission). Receivers acknowledge on
// the stream. It reports the achieved rate, p50/p99/p999, the server's CPU per delivery
// and RSS, and lost and duplicate deliveries; a list of rates is a sweep whose
// latency-vs-rate curve it draws as SVG, -mix adds group messages and receipts, -profile
// writes the server's CPU and allocation profiles.
// idle: opens one Receive stream per device and reports the server's resident memory per
// connected device.
// abuse: honest pairs chat through a quiet phase and then an attack phase in which
// attackers run items 1, 2, 3, 8 and 10 of issue 18 (inbox jam, backlog memory, group
// Welcome amplification, login floods, key draining) against the same server; it
// reports the honest throughput, latency and losses of each phase, the attackers' calls
// by outcome and the server's CPU and memory, and exits non-zero if an honest message
// the server stored was never delivered. The attackers run in a process of their own
// (this binary again, with GUARDYN_LOADGEN_ATTACKERS set), as a real attacker runs on
// machines of their own; its CPU is reported apart from the honest clients'.
// backlog: queues a large backlog of group messages for many devices, restarts the server
// and has every device reconnect in a loop, reading a little each time without
// acknowledging; reports the server's peak resident memory, which must not grow with the
// backlog.
//
// Devices connect one connection each, as phones do, or with -conns N spread over N
// shared connections, as behind an edge proxy. docs/perf-throughput.md and
// docs/perf-idle.md have the figures; docs/perf-throughput.md "Under attack" those of abuse.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getenv(attackerEnv) != "" {
		attackerMain()
	}
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "throughput":
		err = runThroughput(ctx, os.Args[2:])
	case "open":
		err = runOpen(ctx, os.Args[2:])
	case "idle":
		err = runIdle(ctx, os.Args[2:])
	case "abuse":
		err = runAbuse(ctx, os.Args[2:], os.Stdout)
	case "backlog":
		err = runBacklog(ctx, os.Args[2:])
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// attackerMain runs the abuse scenario's attacker process (its flags follow the
// scenario's own, without the mode) and exits.
func attackerMain() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runAttackerProc(ctx, os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen attackers:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: loadgen <mode> [flags]

modes:
  throughput   1:1 messages sent → delivered → acked: msg/s, p50/p99 latency, server RSS
  open         N devices sending open loop at a Poisson rate: achieved rate, p50/p99/p999 from the
               scheduled send time, server CPU per message, RSS, lost/duplicates; a rate list sweeps
  idle         open Receive streams and report server memory per connected device
  backlog      devices with large backlogs reconnect in a loop: the server's peak RSS
  abuse        honest pairs chatting, quiet and then under attack (issue 18 items 1, 2, 3, 8, 10):
               honest msg/s, p50/p99 and losses per phase, attacker calls by outcome

Run "loadgen <mode> -h" for the flags of a mode.
`)
}
