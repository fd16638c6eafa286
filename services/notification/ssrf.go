package notification

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// A Web Push endpoint is a URL the client chooses and the server then POSTs to: without
// checks the server would be a tool for reaching its own network. An endpoint must be an
// https URL on port 443 whose host resolves only to public addresses, checked when it is
// registered and again on every connection (a host may resolve elsewhere later).

// errPrivateAddress reports an endpoint that resolves to a non-public address.
var errPrivateAddress = errors.New("push endpoint resolves to a non-public address")

// nonPublic lists the ranges no push service lives in, beyond what netip's predicates
// cover (loopback, private, link-local, multicast, unspecified).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 of any IPv4, private ones included
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// publicAddr reports whether a is a public unicast address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsMulticast() || a.IsUnspecified() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Resolver looks up host names; net.DefaultResolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// checkEndpoint validates a Web Push endpoint: an https URL with a host and no user info,
// and, unless allowPrivate, on the default port with every address public.
func checkEndpoint(ctx context.Context, r Resolver, endpoint string, allowPrivate bool) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("endpoint is not a URL: %w", err)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("endpoint scheme %q, want https", u.Scheme)
	}
	if u.Host == "" || u.User != nil || u.Opaque != "" {
		return errors.New("endpoint needs a host and no user info")
	}
	if allowPrivate {
		return nil
	}
	if p := u.Port(); p != "" && p != "443" {
		return fmt.Errorf("endpoint port %s, want 443", p)
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !publicAddr(a) {
			return errPrivateAddress
		}
		return nil
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return errPrivateAddress
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("endpoint host does not resolve: %w", err)
	}
	for _, a := range addrs {
		if !publicAddr(a) {
			return errPrivateAddress
		}
	}
	return nil
}

// publicOnlyControl refuses, at connect time, any connection to a non-public address: the
// check that DNS rebinding cannot get around.
func publicOnlyControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if !publicAddr(ap.Addr()) {
		return errPrivateAddress
	}
	return nil
}

// newDialer returns the dialer push clients use: public addresses only unless allowPrivate.
func newDialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = publicOnlyControl
	}
	return d
}
