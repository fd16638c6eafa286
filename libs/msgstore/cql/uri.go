package cql

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// keyspaceName is what a keyspace may be called: CQL's unquoted identifiers, lower case.
var keyspaceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// ParseURI reads a store address of the form
//
//	cql://h1:9042,h2:9042/guardyn?dc=dc1&consistency=LOCAL_QUORUM&replication=3
//
// into a Config: the contact points (port 9042 when omitted), the keyspace (guardyn when
// the path is empty), the local data center (which also makes routing prefer it), the
// consistency of reads and writes (LOCAL_QUORUM unless given; LOCAL_SERIAL for the
// lightweight transactions either way) and the replication factor the schema command
// gives a new keyspace (3 unless given).
func ParseURI(s string) (Config, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Config{}, fmt.Errorf("cql: parse %q: %w", s, err)
	}
	if u.Scheme != "cql" {
		return Config{}, fmt.Errorf("cql: address %q: scheme must be cql://", s)
	}
	if u.User != nil {
		return Config{}, fmt.Errorf("cql: address %q: credentials do not belong in the address", s)
	}
	c := Config{Keyspace: strings.Trim(u.Path, "/"), Consistency: gocql.LocalQuorum, Replication: 3}
	if c.Keyspace == "" {
		c.Keyspace = DefaultKeyspace
	}
	if !keyspaceName.MatchString(c.Keyspace) {
		return Config{}, fmt.Errorf("cql: address %q: keyspace %q must match %s", s, c.Keyspace, keyspaceName)
	}
	if u.Host == "" {
		return Config{}, fmt.Errorf("cql: address %q: no hosts", s)
	}
	for _, h := range strings.Split(u.Host, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = h, "9042"
		}
		if host == "" {
			return Config{}, fmt.Errorf("cql: address %q: empty host", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Config{}, fmt.Errorf("cql: address %q: bad port %q", s, port)
		}
		c.Hosts = append(c.Hosts, net.JoinHostPort(host, port))
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "dc", "consistency", "replication":
		default:
			return Config{}, fmt.Errorf("cql: address %q: unknown parameter %q", s, k)
		}
	}
	c.DataCenter = q.Get("dc")
	if v := q.Get("consistency"); v != "" {
		cons, err := gocql.ParseConsistencyWrapper(strings.ToUpper(v))
		if err != nil {
			return Config{}, fmt.Errorf("cql: address %q: consistency %q: %w", s, v, err)
		}
		c.Consistency = cons
	}
	if v := q.Get("replication"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 9 {
			return Config{}, fmt.Errorf("cql: address %q: replication %q must be 1 to 9", s, v)
		}
		c.Replication = n
	}
	return c, nil
}
