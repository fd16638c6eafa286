package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestUsageAndArguments(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: guardyn <command>"},
		{[]string{"help"}, 0, "commands:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"send"}, 2, "wrong number of arguments"},
		{[]string{"send", "bob", "hi", "there"}, 2, "wrong number of arguments"},
		{[]string{"send", "--help"}, 0, "usage: guardyn send [flags] <username> [<text> | -]"},
		{[]string{"approve", "a", "b"}, 2, "wrong number of arguments"},
		{[]string{"listen", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"listen", "--once", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"whoami", "--require-verified"}, 2, "flag provided but not defined"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, strings.NewReader(""), &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("guardyn %v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

func TestRemoveDeviceRejectsBadID(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"remove-device", "--home", t.TempDir(), "two"}, nil, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), `device id "two" is not a positive number`) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestFlagsAfterArguments: flags are read wherever they stand; "--" ends them, so a message
// may start with a dash.
func TestFlagsAfterArguments(t *testing.T) {
	t.Setenv("GUARDYN_PASSPHRASE", "not used: there is no profile")
	home := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"remove-device", "two", "--home", home}, `device id "two" is not a positive number`},
		{[]string{"send", "bob", "--home", home, "--", "-5 degrees outside"}, "no profile"},
		{[]string{"send", "--home", home, "bob", "--", "--file"}, "no profile"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, nil, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("guardyn %q: exit %d, stderr %q; want exit 1 and %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// TestSendInput: the text comes from the argument, --file or standard input; empty,
// white-space-only, over-long and doubly given texts are refused before the profile is
// even opened (the home here holds none).
func TestSendInput(t *testing.T) {
	t.Setenv("GUARDYN_PASSPHRASE", "not used: there is no profile")
	home := t.TempDir()
	file := filepath.Join(t.TempDir(), "msg.txt")
	if err := os.WriteFile(file, []byte("from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 32<<10+1)
	cases := []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"send", "bob", ""}, "", "empty message"},
		{[]string{"send", "bob", " \t\n"}, "", "empty message"},
		{[]string{"send", "bob", "-"}, "  \n", "empty message"},
		{[]string{"send", "bob", "-"}, long, "more than 32768 bytes"},
		{[]string{"send", "bob", long}, "", "32769 bytes, at most 32768"},
		{[]string{"send", "bob", "\xff"}, "", "not valid UTF-8"},
		{[]string{"send", "bob", "hi", "--file", file}, "", "not both"},
		{[]string{"send", "bob"}, "", "no message"},
		{[]string{"send", "bob", "--file", filepath.Join(home, "missing")}, "", "message file"},
		// Accepted input gets as far as the (missing) profile.
		{[]string{"send", "bob", "--file", file}, "", "no profile"},
		{[]string{"send", "bob", "-"}, "piped text\n", "no profile"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		args := append(c.args, "--home", home)
		code := run(context.Background(), args, strings.NewReader(c.stdin), &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("guardyn %.60q (stdin %.20q): exit %d, stderr %.200q; want exit 1 and %q", c.args, c.stdin, code, stderr.String(), c.want)
		}
	}
}

func TestDescribeShowsServerReason(t *testing.T) {
	st, err := status.New(codes.NotFound, "no such account").WithDetails(&errdetails.ErrorInfo{Reason: "USER_NOT_FOUND", Domain: "guardyn.dev"})
	if err != nil {
		t.Fatal(err)
	}
	wrapped := fmt.Errorf("client: look up user %q: %w", "nobody", st.Err())
	if got, want := describe(wrapped), `look up user "nobody": no such account (USER_NOT_FOUND)`; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
	plain := fmt.Errorf("client: send to bob: %w", status.Error(codes.Unavailable, "connection refused"))
	if got, want := describe(plain), "send to bob: connection refused (Unavailable)"; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
	if got := describe(fmt.Errorf("vault: wrong passphrase")); got != "vault: wrong passphrase" {
		t.Errorf("describe = %q", got)
	}
}
