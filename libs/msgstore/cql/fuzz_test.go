package cql

import (
	"bytes"
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// FuzzParseCursor: a cursor is either rejected with msgstore.ErrInvalid or encodes back
// to the same bytes.
func FuzzParseCursor(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(position{bucket: 20000, seq: 7}.cursor()))
	f.Add([]byte("not a cursor of ours, certainly"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok, err := parseCursor(b)
		switch {
		case err != nil:
			if !errors.Is(err, msgstore.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		case !ok:
			if len(b) != 0 {
				t.Fatalf("%x read as the start of the inbox", b)
			}
		case !bytes.Equal(p.cursor(), b):
			t.Fatalf("%x parsed as %+v, which encodes as %x", b, p, p.cursor())
		}
	})
}

// FuzzParseURI: an address is rejected or gives hosts with ports and a valid keyspace.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"cql://h1:9042,h2:9042/guardyn?dc=dc1", "cql://h/", "cql://[::1]:9042/k?consistency=quorum&replication=3", "tikv://x", "cql://h/Bad"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseURI(s)
		if err != nil {
			return
		}
		if len(c.Hosts) == 0 || !keyspaceName.MatchString(c.Keyspace) || c.Replication < 1 {
			t.Fatalf("%q accepted as %+v", s, c)
		}
	})
}
