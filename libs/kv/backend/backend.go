// Package backend opens the kv store an operator names with --kv (or GUARDYN_KV): the
// embedded store in the data dir by default, or a TiKV cluster for a tikv:// address;
// see docs/storage.md and docs/operations.md.
//
// The address is one of
//
//	(empty) or embedded                 the embedded store, <data dir>/kv.db
//	tikv://pd1:2379,pd2:2379            a TiKV cluster through its PD endpoints
//	tikv://pd1:2379?prefix=prod/&ca=/etc/guardyn/ca.pem&cert=c.pem&key=k.pem
//
// where prefix is prepended to every key (several deployments or test runs sharing one
// cluster never see each other's keys) and ca, cert and key are PEM files for TLS to PD
// and TiKV. [Parse] checks an address without connecting; [Open] connects.
package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/kv/tikv"
)

// ErrAddress is wrapped by every error of Parse: the address is malformed. The message
// after it names the address and what is wrong with it.
var ErrAddress = errors.New("bad kv address")

// ConnectTimeout bounds how long Open waits for a cluster to answer: a store that cannot
// be reached at start ends the process with an error naming it, not a hang.
const ConnectTimeout = 10 * time.Second

// Limits of an address, far above any real deployment's.
const (
	maxAddressLen = 4096
	maxEndpoints  = 64
)

// Address is a parsed --kv value.
type Address struct {
	// PD lists the PD endpoints (host:port) of a TiKV cluster; none means the embedded
	// store.
	PD []string
	// Prefix is prepended to every key the cluster stores (tikv.Options.Namespace).
	Prefix string
	// CAFile, CertFile and KeyFile are PEM files for TLS to the cluster.
	CAFile, CertFile, KeyFile string
}

// Embedded reports whether a names the embedded store.
func (a Address) Embedded() bool { return len(a.PD) == 0 }

// String returns a in the form Parse reads back.
func (a Address) String() string {
	if a.Embedded() {
		return "embedded"
	}
	q := url.Values{}
	for k, v := range map[string]string{"prefix": a.Prefix, "ca": a.CAFile, "cert": a.CertFile, "key": a.KeyFile} {
		if v != "" {
			q.Set(k, v)
		}
	}
	s := "tikv://" + strings.Join(a.PD, ",")
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// Parse reads an address. Every error wraps ErrAddress and says what is wrong.
func Parse(s string) (Address, error) {
	bad := func(format string, args ...any) (Address, error) {
		shown := s
		if len(shown) > 128 {
			shown = shown[:128] + "..."
		}
		return Address{}, fmt.Errorf("%w %q: %s", ErrAddress, shown, fmt.Sprintf(format, args...))
	}
	if len(s) > maxAddressLen {
		return bad("longer than %d bytes", maxAddressLen)
	}
	switch s {
	case "", "embedded", "embedded://":
		return Address{}, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme != "tikv" {
		return bad("unknown scheme (want empty, embedded or tikv://pd:port,...)")
	}
	hosts, query, _ := strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(hosts, "/")
	if path != "" {
		return bad("unexpected path %q (set a key prefix with ?prefix=)", path)
	}
	if hosts == "" {
		return bad("no PD endpoint")
	}
	var a Address
	for ep := range strings.SplitSeq(hosts, ",") {
		if err := checkEndpoint(ep); err != nil {
			return bad("%v", err)
		}
		if slices.Contains(a.PD, ep) {
			return bad("PD endpoint %q given twice", ep)
		}
		if len(a.PD) == maxEndpoints {
			return bad("more than %d PD endpoints", maxEndpoints)
		}
		a.PD = append(a.PD, ep)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return bad("bad options: %v", err)
	}
	for k, vs := range q {
		var field *string
		switch k {
		case "prefix":
			field = &a.Prefix
		case "ca":
			field = &a.CAFile
		case "cert":
			field = &a.CertFile
		case "key":
			field = &a.KeyFile
		default:
			return bad("unknown option %q (want prefix, ca, cert or key)", k)
		}
		if len(vs) != 1 {
			return bad("option %q given %d times", k, len(vs))
		}
		if vs[0] == "" {
			return bad("option %q is empty", k)
		}
		*field = vs[0]
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return bad("cert and key go together")
	}
	if len(a.Prefix) > kv.MaxKeySize/2 {
		return bad("prefix longer than %d bytes", kv.MaxKeySize/2)
	}
	return a, nil
}

// checkEndpoint accepts host:port with a DNS name or an IP address and a port in 1..65535.
func checkEndpoint(ep string) error {
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return fmt.Errorf("PD endpoint %q: want host:port", ep)
	}
	if host == "" {
		return fmt.Errorf("PD endpoint %q: empty host", ep)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || port[0] == '0' {
		return fmt.Errorf("PD endpoint %q: bad port %q (want 1-65535)", ep, port)
	}
	if strings.Contains(host, ":") {
		if net.ParseIP(host) == nil {
			return fmt.Errorf("PD endpoint %q: bad IPv6 address %q", ep, host)
		}
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return fmt.Errorf("PD endpoint %q: bad host name %q", ep, host)
		}
	}
	return nil
}

// Store is an open kv store and what a server needs to run it.
type Store struct {
	kv.Store
	ready func(context.Context) error
	// Embedded is the embedded store, nil on a cluster; tests break it on purpose.
	Embedded *kvembedded.Store
}

// Ready is the store's readiness check: the embedded store's writer committing, a
// cluster serving a read.
func (s *Store) Ready(ctx context.Context) error { return s.ready(ctx) }

// Embedded returns the embedded store s as a Store.
func Embedded(s *kvembedded.Store) *Store { return &Store{Store: s, ready: s.Ready, Embedded: s} }

// Cluster returns the TiKV store s as a Store; tests pass one on client-go's mock cluster.
func Cluster(s *tikv.Store) *Store { return &Store{Store: s, ready: s.Ready} }

// Open opens the store at addr (see Parse), the embedded one under dataDir. A store it
// cannot open, or a cluster that does not answer within ConnectTimeout, fails with an
// error naming it.
func Open(ctx context.Context, addr, dataDir string) (*Store, error) {
	a, err := Parse(addr)
	if err != nil {
		return nil, err
	}
	if a.Embedded() {
		s, err := kvembedded.Open(filepath.Join(dataDir, kvembedded.FileName), kvembedded.Options{})
		if err != nil {
			return nil, fmt.Errorf("kv store in %s: %w", dataDir, err)
		}
		return Embedded(s), nil
	}
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	s, err := tikv.Open(ctx, a.PD, tikv.Options{Namespace: []byte(a.Prefix), CAFile: a.CAFile, CertFile: a.CertFile, KeyFile: a.KeyFile})
	if err != nil {
		return nil, fmt.Errorf("kv store %s: %w", a, err)
	}
	return Cluster(s), nil
}
