// Command guardyn is the Guardyn command-line client: register an account, link devices,
// send and receive end-to-end encrypted messages, compare safety numbers. The walkthrough
// is docs/cli.md.
//
//	guardyn <command> [flags] [arguments]
//
// Every command takes --home (or env GUARDYN_HOME), --profile, --server (or env
// GUARDYN_SERVER) and --passphrase-file (or env GUARDYN_PASSPHRASE); `guardyn <command>
// --help` describes it.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/client"
)

// command is one subcommand.
type command struct {
	args    string // positional arguments, for the usage line
	summary string
	run     func(ctx context.Context, e *env, args []string) error
	// flags adds command-specific flags.
	flags func(fs *flag.FlagSet, e *env)
	// nargs is the number of positional arguments, -1 for "0 or 1", -2 for "1 or 2", -3
	// for "1 or more".
	nargs int
}

var commands = map[string]command{
	"register":       {args: "<username>", summary: "create an account with this profile as its first device", run: cmdRegister, flags: deviceNameFlag, nargs: 1},
	"login":          {summary: "log in again with the device identity key (tokens refresh automatically)", run: cmdLogin},
	"whoami":         {summary: "show this profile's account, device and key fingerprint", run: cmdWhoami},
	"devices":        {summary: "list the account's devices with their key fingerprints", run: cmdDevices},
	"link":           {args: "<username>", summary: "make this profile a new device of an existing account and wait for approval", run: cmdLink, flags: deviceNameFlag, nargs: 1},
	"approve":        {args: "[link-id]", summary: "list pending device links, or approve one after comparing its fingerprint", run: cmdApprove, nargs: -1},
	"reject":         {args: "<link-id>", summary: "reject a pending device link", run: cmdReject, nargs: 1},
	"remove-device":  {args: "<device-id>", summary: "remove a device from the account", run: cmdRemoveDevice, nargs: 1},
	"send-file":      {args: "<username|group> <path>", summary: "send a file end-to-end encrypted (a killed upload resumes when run again)", run: cmdSendFile, flags: requireVerifiedFlag, nargs: 2},
	"get":            {args: "<message-id> [path]", summary: "download, verify and decrypt the file of a message (into the current directory by default)", run: cmdGet, nargs: -2},
	"send":           {args: "<username> [<text> | -]", summary: "send an end-to-end encrypted message (text as an argument, from --file, or from standard input with -)", run: cmdSend, flags: sendFlags, nargs: -2},
	"listen":         {summary: "print incoming messages, receipts and typing indicators", run: cmdListen, flags: listenFlags},
	"typing":         {args: "<username>", summary: "tell a user's online devices that you are typing (never stored)", run: cmdTyping, flags: requireVerifiedFlag, nargs: 1},
	"history":        {args: "[username]", summary: "show the local message history", run: cmdHistory, nargs: -1},
	"safety-number":  {args: "<username>", summary: "show the safety number to compare with a contact", run: cmdSafetyNumber, nargs: 1},
	"trust":          {args: "<username>", summary: "accept a contact's changed identity keys after comparing safety numbers", run: cmdTrust, nargs: 1},
	"export":         {summary: "print everything the server stores about your account", run: cmdExport},
	"group":          {args: groupUsage, summary: "manage group chats (each of your devices is a member; send <name> and listen carry the messages)", run: cmdGroup, nargs: -3},
	"delete-account": {summary: "delete the account on the server and this profile", run: cmdDeleteAccount, flags: confirmFlag},
	"presence":       {args: "set <status> | privacy <everyone|contacts|nobody> [username...] | show <username...>", summary: "set this device's status, choose who sees your presence, or show contacts'", run: cmdPresence, flags: presenceFlags, nargs: atLeastOne},
	"watch":          {args: "<username...>", summary: "print contacts' presence, then every change", run: cmdWatch, flags: watchFlags, nargs: atLeastOne},
	"push":           {args: "list | web <endpoint> <p256dh> <auth> | unregister", summary: "list or set where this account's devices are woken by content-free pushes", run: cmdPush, nargs: atLeastOne},
}

// env is what every command gets: the parsed common flags.
type env struct {
	home, profile, server, passphraseFile string
	useTLS, requireVerified               bool
	deviceName                            string
	once                                  bool
	confirm                               string
	file                                  string
	statusText                            string
	stdin                                 io.Reader
	stdout, stderr                        io.Writer
	conn                                  *grpc.ClientConn
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "guardyn: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&e.home, "home", os.Getenv("GUARDYN_HOME"), "profile directory (env GUARDYN_HOME; default ~/.guardyn/<profile>)")
	fs.StringVar(&e.profile, "profile", "default", "profile name under ~/.guardyn, when --home is not set")
	fs.StringVar(&e.server, "server", envOr("GUARDYN_SERVER", "127.0.0.1:7443"), "server gRPC address (env GUARDYN_SERVER)")
	fs.StringVar(&e.passphraseFile, "passphrase-file", "", "read the profile passphrase from this file (else env GUARDYN_PASSPHRASE, else a prompt)")
	fs.BoolVar(&e.useTLS, "tls", false, "connect with TLS (system roots); off for the loopback dev server")
	e.requireVerified = envBool("GUARDYN_REQUIRE_VERIFIED")
	if cmd.flags != nil {
		cmd.flags(fs, e)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: guardyn %s [flags] %s\n\n%s.\n\nFlags may come before or after the arguments; "+
			"put -- before an argument that starts with a dash.\n\nflags:\n", name, cmd.args, capitalize(cmd.summary))
		fs.PrintDefaults()
	}
	rest, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if !argCountOK(cmd.nargs, len(rest)) {
		fmt.Fprintf(stderr, "guardyn %s: wrong number of arguments\n", name)
		fs.Usage()
		return 2
	}
	if e.home == "" {
		dir, err := os.UserHomeDir()
		if err != nil {
			fmt.Fprintf(stderr, "guardyn %s: no --home and no home directory: %v\n", name, err)
			return 1
		}
		e.home = filepath.Join(dir, ".guardyn", e.profile)
	}
	creds := insecure.NewCredentials()
	if e.useTLS {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13})
	}
	conn, err := grpc.NewClient(e.server, append(client.DialOptions(), grpc.WithTransportCredentials(creds))...)
	if err != nil {
		fmt.Fprintf(stderr, "guardyn %s: server address %q: %v\n", name, e.server, err)
		return 1
	}
	defer conn.Close()
	e.conn = conn
	if err := cmd.run(ctx, e, rest); err != nil {
		fmt.Fprintf(stderr, "guardyn %s: %s\n", name, describe(err))
		return 1
	}
	return 0
}

// parseInterleaved parses flags wherever they appear among the arguments, as people type
// them (`guardyn send bob hi --file x` as well as `guardyn send --file x bob`), and returns
// the positional arguments in order. "--" ends the flags: what follows is taken as is, so
// a message may start with a dash. A lone "-" is an argument (standard input).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if parsed := len(args) - len(rest); parsed > 0 && args[parsed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func argCountOK(nargs, n int) bool {
	switch nargs {
	case -1:
		return n <= 1
	case -2:
		return n == 1 || n == 2
	case -3:
		return n >= 1
	default:
		return n == nargs
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: guardyn <command> [flags] [arguments]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-15s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'guardyn <command> --help' for a command's flags. See docs/cli.md.")
}

// describe turns an error into one line, replacing gRPC's "rpc error: code = ... desc ="
// with the server's message and stable reason.
func describe(err error) string {
	msg := err.Error()
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		st := se.GRPCStatus()
		if i := strings.Index(msg, "rpc error: "); i >= 0 {
			msg = msg[:i] + st.Message()
		}
		if reason := client.Reason(err); reason != "" {
			msg += " (" + reason + ")"
		} else {
			msg += " (" + st.Code().String() + ")"
		}
	}
	return strings.ReplaceAll(msg, "client: ", "")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func envOr(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return fallback
}

// envBool reports whether the environment variable is set to a true value (1, true, yes).
func envBool(name string) bool {
	switch strings.ToLower(os.Getenv(name)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// passphrase reads the profile passphrase: --passphrase-file, then GUARDYN_PASSPHRASE, then a
// no-echo prompt on the terminal (twice when creating a profile).
func (e *env) passphrase(create bool) ([]byte, error) {
	if e.passphraseFile != "" {
		b, err := os.ReadFile(e.passphraseFile)
		if err != nil {
			return nil, fmt.Errorf("passphrase file: %w", err)
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return nil, errors.New("passphrase file is empty")
		}
		return []byte(p), nil
	}
	if p := os.Getenv("GUARDYN_PASSPHRASE"); p != "" {
		return []byte(p), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errors.New("no passphrase: set GUARDYN_PASSPHRASE, pass --passphrase-file, or run in a terminal")
	}
	fmt.Fprint(e.stderr, "profile passphrase: ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if create {
		fmt.Fprint(e.stderr, "repeat passphrase: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(e.stderr)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		if string(again) != string(p) {
			return nil, errors.New("passphrases do not match")
		}
	}
	return p, nil
}

// config builds the client configuration for this profile.
func (e *env) config(create bool) (client.Config, error) {
	p, err := e.passphrase(create)
	if err != nil {
		return client.Config{}, err
	}
	return client.Config{Home: e.home, Passphrase: p, Conn: e.conn, RequireVerified: e.requireVerified}, nil
}

// open unlocks the existing profile.
func (e *env) open() (*client.Client, error) {
	cfg, err := e.config(false)
	if err != nil {
		return nil, err
	}
	return client.Open(cfg)
}

func deviceNameFlag(fs *flag.FlagSet, e *env) {
	host, _ := os.Hostname()
	if host == "" {
		host = "cli"
	}
	fs.StringVar(&e.deviceName, "device-name", host, "name of this device, shown in device lists (visible to the server)")
}

func listenFlags(fs *flag.FlagSet, e *env) {
	fs.BoolVar(&e.once, "once", false, "exit after the stored backlog (for scripts)")
	requireVerifiedFlag(fs, e)
}

func sendFlags(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.file, "file", "", "send the text of this file (UTF-8, at most 32 KiB) instead of an argument")
	requireVerifiedFlag(fs, e)
}

// requireVerifiedFlag is strict mode, for the commands that send: messages, typing
// indicators, and the receipts listen sends.
func requireVerifiedFlag(fs *flag.FlagSet, e *env) {
	fs.BoolVar(&e.requireVerified, "require-verified", e.requireVerified,
		"strict mode: refuse to send to accounts with new devices not yet accepted with trust (env GUARDYN_REQUIRE_VERIFIED=1)")
}

func confirmFlag(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.confirm, "confirm", "", "the account's username, repeated to confirm the deletion (required)")
}
