package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// attackerEnv, set in its environment, makes loadgen run as the abuse scenario's attacker
// process: a real attacker runs on machines of their own, so the attackers' client work
// (building and sending 256 KiB envelopes, signing logins, reading backlogs) must not
// share the honest clients' Go scheduler, and its CPU is reported on its own.
const attackerEnv = "GUARDYN_LOADGEN_ATTACKERS"

// attackMsg is one line of the protocol between the scenario and its attacker process:
// a command from the scenario, or the answer to it.
type attackMsg struct {
	Cmd      string         `json:"cmd,omitempty"` // setup, attack, report
	Addr     string         `json:"addr,omitempty"`
	Targets  []attackTarget `json:"targets,omitempty"`
	Duration time.Duration  `json:"duration,omitempty"`

	Error string                    `json:"error,omitempty"`
	Calls map[string]map[string]int `json:"calls,omitempty"`
}

// attackTarget is what the attackers know of an honest receiver: public names only.
type attackTarget struct {
	Username string `json:"username"`
	UserID   string `json:"user_id"`
	Device   uint32 `json:"device"`
}

// attackerProc is the scenario's handle on its attacker process.
type attackerProc struct {
	cmd *exec.Cmd
	enc *json.Encoder
	dec *json.Decoder
}

// startAttackerProc starts this executable again as the attacker process, with the
// scenario's flags.
func startAttackerProc(args []string) (*attackerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), attackerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the attacker process: %w", err)
	}
	return &attackerProc{cmd: cmd, enc: json.NewEncoder(in), dec: json.NewDecoder(bufio.NewReader(out))}, nil
}

// call sends a command and waits for its answer.
func (p *attackerProc) call(m attackMsg) (attackMsg, error) {
	if err := p.enc.Encode(m); err != nil {
		return attackMsg{}, fmt.Errorf("attacker process: send %s: %w", m.Cmd, err)
	}
	var ans attackMsg
	if err := p.dec.Decode(&ans); err != nil {
		return attackMsg{}, fmt.Errorf("attacker process: answer to %s: %w", m.Cmd, err)
	}
	if ans.Error != "" {
		return ans, fmt.Errorf("attacker process: %s: %s", m.Cmd, ans.Error)
	}
	return ans, nil
}

func (p *attackerProc) pid() int { return p.cmd.Process.Pid }

// stop ends the process (it exits after report; a failed run kills it) and reaps it.
func (p *attackerProc) stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// report asks for the attackers' call counts; the process then exits.
func (p *attackerProc) report() (map[string]map[string]int, error) {
	ans, err := p.call(attackMsg{Cmd: "report"})
	if err != nil {
		return nil, err
	}
	p.cmd.Wait()
	return ans.Calls, nil
}

// targetsOf lists the honest receivers for the attacker process.
func targetsOf(pairs []*pair) []attackTarget {
	out := make([]attackTarget, len(pairs))
	for i, p := range pairs {
		out[i] = attackTarget{Username: p.receiver.Username, UserID: p.receiver.UserID, Device: p.receiver.ID}
	}
	return out
}

// runAttackerProc is the attacker process: it parses the scenario's flags and serves the
// scenario's commands from in until report, answering on out.
func runAttackerProc(ctx context.Context, args []string, in io.Reader, out io.Writer) error {
	f, err := parseAbuseFlags(args)
	if err != nil {
		return err
	}
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	calls := newTally()
	var (
		att   *attackers
		pairs []*pair
		conn  *grpc.ClientConn
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		var m attackMsg
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the scenario went away")
			}
			return err
		}
		var ans attackMsg
		switch m.Cmd {
		case "setup":
			// Register the attackers and queue the backlogs on the server without rate
			// limits, as the scenario registers the honest pairs.
			pairs = make([]*pair, len(m.Targets))
			for i, t := range m.Targets {
				pairs[i] = &pair{receiver: &rawdevice.Device{Username: t.Username, UserID: t.UserID, ID: t.Device}}
			}
			c, err := grpc.NewClient(m.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err == nil {
				att, err = setupAttackers(ctx, authv1.NewAuthServiceClient(c), f, pairs)
				if err == nil {
					att.fill(ctx, c, f, calls)
				}
				c.Close()
			}
			if err != nil {
				ans.Error = err.Error()
			}
		case "attack":
			if att == nil {
				ans.Error = "attack before setup"
				break
			}
			if conn == nil || conn.Target() != m.Addr {
				if conn != nil {
					conn.Close()
				}
				if conn, err = grpc.NewClient(m.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
					ans.Error = err.Error()
					break
				}
			}
			actx, cancel := context.WithTimeout(ctx, m.Duration)
			att.run(actx, conn, f, pairs, calls)
			cancel()
		case "report":
			ans.Calls = calls.counts
			return enc.Encode(ans)
		default:
			ans.Error = fmt.Sprintf("unknown command %q", m.Cmd)
		}
		if err := enc.Encode(ans); err != nil {
			return err
		}
	}
}
