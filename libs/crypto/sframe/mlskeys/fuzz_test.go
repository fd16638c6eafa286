package mlskeys

import (
	"bytes"
	"crypto"
	"errors"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/sframe"
	"github.com/guardyn/guardyn/libs/crypto/sframe/mlskeys/mlskeystest"
)

// FuzzKeyringUnprotect feeds arbitrary frames to a keyring holding a current
// and a previous epoch. Nothing may panic, every error must be a documented
// kind, and a rejected frame must leave no receiving key behind.
func FuzzKeyringUnprotect(f *testing.F) {
	secret := bytes.Repeat([]byte{0x42}, 32)
	g1 := mlskeystest.NewGroup(crypto.SHA256, secret, 1, 0, 3)
	g2, err := g1.Advance(0, 3)
	if err != nil {
		f.Fatal(err)
	}
	sender, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Hour, 64, nil, mlskeystest.NewCounterStore())
	if err != nil {
		f.Fatal(err)
	}
	for _, g := range []*mlskeystest.Group{g1.As(1), g2.As(1)} {
		if err := sender.SetEpoch(g); err != nil {
			f.Fatal(err)
		}
		for _, pt := range []string{"", "frame"} {
			frame, err := sender.Protect(0, nil, []byte("md"), []byte(pt))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(frame, []byte("md"))
		}
	}
	f.Add([]byte{0x80, 0x07}, []byte(nil))
	f.Fuzz(func(t *testing.T, frame, md []byte) {
		now := time.Unix(0, 0)
		k, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Hour, 64, func() time.Time { return now }, mlskeystest.NewCounterStore())
		if err != nil {
			t.Fatal(err)
		}
		if err := k.SetEpoch(g1); err != nil {
			t.Fatal(err)
		}
		if err := k.SetEpoch(g2); err != nil {
			t.Fatal(err)
		}
		_, err = k.Unprotect(nil, md, frame)
		if err == nil {
			return
		}
		for _, want := range []error{sframe.ErrTruncated, sframe.ErrNonMinimalHeader, sframe.ErrUnknownKeyID,
			sframe.ErrAuthentication, ErrUnknownEpoch, ErrOwnFrame} {
			if errors.Is(err, want) {
				if len(k.current.kids) != 0 || len(k.previous.kids) != 0 {
					t.Fatalf("rejected frame (%v) left a key", err)
				}
				return
			}
		}
		t.Fatalf("undocumented error: %v", err)
	})
}
