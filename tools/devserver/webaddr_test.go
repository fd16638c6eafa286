package main

import "testing"

// The fixed web port goes only with the fixed gRPC port: servers started on other
// addresses (tests, load generators, several at once) never reach for 7445 together.
func TestAutoWebAddr(t *testing.T) {
	for _, c := range []struct{ flag, grpc, want string }{
		{"auto", "127.0.0.1:7443", "127.0.0.1:7445"},
		{"auto", "127.0.0.1:0", "127.0.0.1:0"},
		{"auto", ":7443", ":0"},
		{"auto", "[::1]:9000", "[::1]:0"},
		{"", "127.0.0.1:7443", ""},
		{"0.0.0.0:8080", "127.0.0.1:0", "0.0.0.0:8080"},
	} {
		if got := autoWebAddr(c.flag, c.grpc); got != c.want {
			t.Errorf("autoWebAddr(%q, %q) = %q, want %q", c.flag, c.grpc, got, c.want)
		}
	}
}
