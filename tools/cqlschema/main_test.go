package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestUnreachableStoreFails: a store that does not answer ends the command non-zero with
// an error naming it; bad addresses are usage errors.
func TestUnreachableStoreFails(t *testing.T) {
	addr := "cql://" + closedAddr(t) + "/guardyn"
	var out, errs bytes.Buffer
	if code := run(context.Background(), nil, addr, &out, &errs); code != 1 || !strings.Contains(errs.String(), "message store "+addr) {
		t.Fatalf("exit %d, stderr %q; want 1 naming %s", code, errs.String(), addr)
	}
	for _, args := range [][]string{{"tikv://x"}, {"cql:///guardyn"}, {"cql://h/Bad-Name"}, {"a", "b"}} {
		errs.Reset()
		if code := run(context.Background(), args, "", &out, &errs); code != 2 || errs.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 with a message", args, code, errs.String())
		}
	}
	if code := run(context.Background(), nil, "", &out, &errs); code != 2 {
		t.Errorf("no address: exit %d, want 2", code)
	}
}
