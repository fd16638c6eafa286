package backend_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/backend"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want backend.Address
	}{
		{"", backend.Address{}},
		{"embedded", backend.Address{}},
		{"embedded://", backend.Address{}},
		{"tikv://pd1:2379", backend.Address{PD: []string{"pd1:2379"}}},
		{"tikv://pd1:2379,pd2.example.com:2379,10.0.0.3:2379,[::1]:2379/", backend.Address{PD: []string{"pd1:2379", "pd2.example.com:2379", "10.0.0.3:2379", "[::1]:2379"}}},
		{"tikv://pd1:2379?prefix=prod/&ca=/etc/ca.pem&cert=/etc/c.pem&key=/etc/k.pem",
			backend.Address{PD: []string{"pd1:2379"}, Prefix: "prod/", CAFile: "/etc/ca.pem", CertFile: "/etc/c.pem", KeyFile: "/etc/k.pem"}},
		{"tikv://pd1:2379?ca=ca.pem", backend.Address{PD: []string{"pd1:2379"}, CAFile: "ca.pem"}},
	} {
		got, err := backend.Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if again, err := backend.Parse(got.String()); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

// TestParseRejects: every malformed address fails with ErrAddress and a message naming
// the address and what is wrong, before anything connects.
func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ in, reason string }{
		{"tikv://", "no PD endpoint"},
		{"tikv://?prefix=a", "no PD endpoint"},
		{"tikv://:2379", "empty host"},
		{"tikv://pd1:2379,:2379", "empty host"},
		{"tikv://pd1", "want host:port"},
		{"tikv://pd1:", `bad port ""`},
		{"tikv://pd1:0", "bad port"},
		{"tikv://pd1:65536", "bad port"},
		{"tikv://pd1:-1", "bad port"},
		{"tikv://pd1:+80", "bad port"},
		{"tikv://pd1:02379", "bad port"},
		{"tikv://pd1:http", "bad port"},
		{"tikv://pd1:2379,", "want host:port"},
		{"tikv://pd 1:2379", "bad host name"},
		{"tikv://pd..1:2379", "bad host name"},
		{"tikv://[::zz]:2379", "bad IPv6 address"},
		{"tikv://pd1:2379,pd1:2379", "given twice"},
		{"tikv://pd1:2379/guardyn", "unexpected path"},
		{"tikv://pd1:2379?keyspace=a", `unknown option "keyspace"`},
		{"tikv://pd1:2379?prefix=a&prefix=b", "given 2 times"},
		{"tikv://pd1:2379?prefix=", "is empty"},
		{"tikv://pd1:2379?cert=c.pem", "cert and key go together"},
		{"tikv://pd1:2379?key=k.pem", "cert and key go together"},
		{"tikv://pd1:2379?prefix=%zz", "bad options"},
		{"tikv://pd1:2379?prefix=" + strings.Repeat("p", kv.MaxKeySize/2+1), "prefix longer than 2048"},
		{"tikv://" + strings.Repeat("pd:1,", 1000), "longer than 4096 bytes"},
		{"cql://h1:9042", "unknown scheme"},
		{"TIKV://pd1:2379", "unknown scheme"},
		{"pd1:2379", "unknown scheme"},
		{"embedded:///var/lib", "unknown scheme"},
	} {
		_, err := backend.Parse(tc.in)
		if !errors.Is(err, backend.ErrAddress) {
			t.Errorf("Parse(%q) = %v, want ErrAddress", tc.in, err)
			continue
		}
		msg := err.Error()
		if len(msg) > 400 {
			t.Errorf("Parse(%q...): a message of %d bytes", tc.in[:32], len(msg))
		}
		if !strings.HasPrefix(msg, "bad kv address ") || !strings.Contains(msg, tc.reason) {
			t.Errorf("Parse(%q) = %q, want it to say %q", tc.in, msg, tc.reason)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "embedded", "tikv://pd1:2379,pd2:2379", "tikv://[::1]:1?prefix=a%2Fb&ca=x", "tikv://a:1/?cert=c&key=k", "tikv://:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := backend.Parse(s)
		if err != nil {
			if !errors.Is(err, backend.ErrAddress) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrAddress", s, err)
			}
			return
		}
		again, err := backend.Parse(a.String())
		if err != nil || !reflect.DeepEqual(again, a) {
			t.Fatalf("Parse(%q) = %+v; its String %q parses as %+v, %v", s, a, a.String(), again, err)
		}
		if again.String() != a.String() {
			t.Fatalf("String not stable: %q then %q", a.String(), again.String())
		}
	})
}

func TestOpenEmbedded(t *testing.T) {
	s, err := backend.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Embedded == nil {
		t.Fatal("the default address did not open the embedded store")
	}
	if err := s.Update(context.Background(), func(tx kv.Tx) error { return tx.Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestOpenUnreachableCluster: a cluster whose PD does not answer fails Open within its
// context's deadline (client-go alone retries for 100 s), with an error naming the store
// and wrapping kv.ErrUnavailable. The default bound, ConnectTimeout, is what
// tools/devserver's TestUnreachableKVExits waits for.
func TestOpenUnreachableCluster(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "tikv://" + l.Addr().String()
	l.Close()
	const bound = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	start := time.Now()
	s, err := backend.Open(ctx, addr, t.TempDir())
	took := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open of a closed port succeeded")
	}
	if !errors.Is(err, kv.ErrUnavailable) || !strings.HasPrefix(err.Error(), "kv store "+addr+": ") {
		t.Fatalf("Open of a closed port: %v; want kv.ErrUnavailable naming %s", err, addr)
	}
	if took > bound+5*time.Second {
		t.Fatalf("Open gave up after %v, want about %v", took, bound)
	}
	t.Logf("gave up after %v: %v", took.Round(time.Millisecond), err)
}

func TestOpenBadAddress(t *testing.T) {
	_, err := backend.Open(context.Background(), "tikv://pd1:99999", t.TempDir())
	if !errors.Is(err, backend.ErrAddress) {
		t.Fatalf("Open with a bad port: %v, want ErrAddress", err)
	}
}
