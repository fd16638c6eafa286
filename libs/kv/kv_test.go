package kv_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/kv"
)

func TestPrefixEnd(t *testing.T) {
	cases := []struct{ prefix, want []byte }{
		{[]byte("auth/"), []byte("auth0")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("a\xfe\xff\xff"), []byte("a\xff")},
		{[]byte("\xff\xff"), nil},
		{nil, nil},
	}
	for _, c := range cases {
		if got := kv.PrefixEnd(c.prefix); !bytes.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	prefix := []byte("ab\xff")
	kv.PrefixEnd(prefix)
	if string(prefix) != "ab\xff" {
		t.Errorf("PrefixEnd modified its argument to %q", prefix)
	}
}

func TestChecks(t *testing.T) {
	if err := kv.CheckKey(nil); !errors.Is(err, kv.ErrEmptyKey) {
		t.Errorf("CheckKey(nil) = %v", err)
	}
	if err := kv.CheckKey(make([]byte, kv.MaxKeySize)); err != nil {
		t.Errorf("CheckKey of MaxKeySize bytes = %v", err)
	}
	if err := kv.CheckKey(make([]byte, kv.MaxKeySize+1)); !errors.Is(err, kv.ErrKeyTooLarge) {
		t.Errorf("CheckKey of MaxKeySize+1 bytes = %v", err)
	}
	if err := kv.CheckValue(nil); err != nil {
		t.Errorf("CheckValue(nil) = %v", err)
	}
	if err := kv.CheckValue(make([]byte, kv.MaxValueSize+1)); !errors.Is(err, kv.ErrValueTooLarge) {
		t.Errorf("CheckValue of MaxValueSize+1 bytes = %v", err)
	}
}
