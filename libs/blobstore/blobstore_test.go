package blobstore

import (
	"errors"
	"testing"
)

func TestParseDigest(t *testing.T) {
	good := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	d, err := ParseDigest(good)
	if err != nil || d.String() != good {
		t.Fatalf("ParseDigest(%q) = %v, %v", good, d, err)
	}
	for _, bad := range []string{"", good[:63], good + "0", "G" + good[1:], "A" + good[1:], "../" + good[3:]} {
		if _, err := ParseDigest(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDigest(%q): err = %v, want ErrInvalid", bad, err)
		}
	}
}
