package main

import (
	"bytes"
	"context"
	"fmt"
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
		{[]string{"send", "bob"}, 2, "wrong number of arguments"},
		{[]string{"send", "--help"}, 0, "usage: guardyn send [flags] <username> <text>"},
		{[]string{"approve", "a", "b"}, 2, "wrong number of arguments"},
		{[]string{"listen", "--bogus"}, 2, "flag provided but not defined"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("guardyn %v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

func TestRemoveDeviceRejectsBadID(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"remove-device", "--home", t.TempDir(), "two"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), `device id "two" is not a positive number`) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
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
